package agentapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

// Client is one plug-in invocation's client of the agent: one connection
// per request. It is not safe for concurrent use (a plug-in process runs
// one verb).
type Client struct {
	Socket string
	// PeerUID is the uid the agent must run as (0).
	PeerUID uint32
	conn    *net.UnixConn
}

// ErrAgent wraps every reason the agent did not serve a pod; the caller
// falls back to the API on any of them.
var ErrAgent = errors.New("agent did not serve the pod")

func (c *Client) dial(ctx context.Context) error {
	if c.conn != nil {
		return nil
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return err
	}
	uc := conn.(*net.UnixConn)
	cred, err := PeerCred(uc)
	if err == nil {
		err = CheckPeer(cred, c.PeerUID)
	}
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("agent socket %s: %w", c.Socket, err)
	}
	c.conn = uc
	return nil
}

// Close ends the connection.
func (c *Client) Close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// GetPod asks the agent for the pod. Every failure (no agent, a refusal, a
// timeout, a miss, an answer about another pod) is an error wrapping
// ErrAgent; on success the pod is the one asked for, with uid.
func (c *Client) GetPod(ctx context.Context, req PodRequest) (*pod.Pod, string, error) {
	p, uid, err := c.getPod(ctx, req)
	c.Close() // one request per connection: the agent closes its end after answering
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrAgent, err)
	}
	return p, uid, nil
}

func (c *Client) getPod(ctx context.Context, req PodRequest) (*pod.Pod, string, error) {
	if err := c.dial(ctx); err != nil {
		return nil, "", err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetDeadline(dl)
	}
	if err := WriteMessage(c.conn, &Request{Version: Version, Kind: KindPod, Pod: &req}); err != nil {
		return nil, "", err
	}
	var resp Response
	if err := ReadMessage(c.conn, &resp); err != nil {
		return nil, "", err
	}
	_ = c.conn.SetDeadline(time.Time{})
	return checkAnswer(&resp, req)
}

// checkAnswer accepts only a well-formed answer about the pod asked for.
func checkAnswer(resp *Response, req PodRequest) (*pod.Pod, string, error) {
	if resp.Version != Version {
		return nil, "", fmt.Errorf("agent speaks protocol version %d, want %d", resp.Version, Version)
	}
	switch resp.Status {
	case StatusOK:
	case StatusMiss, StatusNotReady, StatusError:
		return nil, "", fmt.Errorf("agent answered %s: %s", resp.Status, resp.Error)
	default:
		return nil, "", fmt.Errorf("agent answered unknown status %q", resp.Status)
	}
	p := resp.Pod
	switch {
	case p == nil:
		return nil, "", errors.New("agent answered ok without a pod")
	case p.Metadata.Namespace != req.Namespace || p.Metadata.Name != req.Name:
		return nil, "", fmt.Errorf("agent answered with pod %s/%s, asked for %s/%s",
			p.Metadata.Namespace, p.Metadata.Name, req.Namespace, req.Name)
	case resp.UID == "":
		return nil, "", errors.New("agent answered without the pod's uid")
	case req.UID != "" && resp.UID != req.UID:
		return nil, "", fmt.Errorf("agent answered with uid %s, asked for %s", resp.UID, req.UID)
	}
	return p, resp.UID, nil
}

// Report sends the verb's outcome, best effort: it gives up when ctx's
// deadline passes and expects no answer.
func (c *Client) Report(ctx context.Context, r *Report) error {
	if err := c.dial(ctx); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetDeadline(dl)
	}
	err := WriteMessage(c.conn, &Request{Version: Version, Kind: KindReport, Report: r})
	c.Close()
	return err
}
