// Package agentapi is the node agent's socket protocol: the messages the
// plug-in and the agent exchange, their framing, and the client the plug-in
// uses. It is imported by the plug-in, so it stays small: no client-go.
//
// Framing: every message is a 4-byte big-endian length followed by that many
// bytes of JSON. A length above MaxMessage is refused before anything is
// read, so a garbled or hostile peer cannot make either side allocate.
package agentapi

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

// Version is the protocol version this code speaks. A peer with another
// version gets StatusError and the plug-in falls back to the API.
const Version = 1

// MaxMessage bounds one message. A pod's annotations are limited to 256 KiB
// by the API server; a report carries a few log records.
const MaxMessage = 1 << 20

// DefaultSocket is where the agent listens unless configured otherwise.
const DefaultSocket = "/var/run/mesh-cni/agent.sock"

// Kinds of request.
const (
	KindPod    = "pod"    // which pod is this? answered from the agent's cache
	KindReport = "report" // the plug-in's decision and log records; no answer
)

// Statuses of a pod answer.
const (
	StatusOK       = "ok"        // Pod is set and is the pod asked for
	StatusMiss     = "miss"      // not in the cache within the wait (or another UID)
	StatusNotReady = "not-ready" // the cache has not synced yet
	StatusError    = "error"     // the request was refused (Error says why)
)

// Decisions a report carries (the `decision` log field).
const (
	DecisionRedirected    = "redirected"
	DecisionNotRedirected = "not-redirected"
	DecisionRefused       = "refused"
	DecisionBypassed      = "bypassed"
	DecisionError         = "error"
)

// Causes of refused and error decisions.
const (
	CauseBadAnnotation  = "bad-annotation"
	CauseAPIUnreachable = "api-unreachable"
	CausePodNotFound    = "pod-not-found"
	CauseProgramming    = "programming"
	CauseRulesDiffer    = "rules-differ"
	CauseInvalid        = "invalid-input"
)

// Pod sources a report names.
const (
	SourceCache = "cache" // the agent's cache answered
	SourceAPI   = "api"   // the plug-in's own GET
	SourceNone  = "none"  // decided without reading the pod
)

// Request is what the plug-in sends.
type Request struct {
	Version int         `json:"v"`
	Kind    string      `json:"kind"`
	Pod     *PodRequest `json:"pod,omitempty"`
	Report  *Report     `json:"report,omitempty"`
}

// PodRequest names the pod being set up. UID is K8S_POD_UID when the
// runtime passes it: a cached pod with another UID is not this pod.
type PodRequest struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
	// WaitMillis caps how long the agent may wait for its watch to deliver
	// the pod; the agent's own --pod-wait caps it too.
	WaitMillis int64 `json:"waitMillis,omitempty"`
}

// Response answers a PodRequest.
type Response struct {
	Version int      `json:"v"`
	Status  string   `json:"status"`
	Error   string   `json:"error,omitempty"`
	UID     string   `json:"uid,omitempty"`
	Pod     *pod.Pod `json:"pod,omitempty"`
}

// Report is one verb's outcome, sent when the verb ends.
type Report struct {
	Verb        string `json:"verb"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	UID         string `json:"uid,omitempty"`
	ContainerID string `json:"containerID,omitempty"`
	Decision    string `json:"decision"`
	Reason      string `json:"reason"`
	Source      string `json:"source,omitempty"`
	// Cause is a short, bounded code for refused and error decisions (a
	// metric label): one of the Cause constants.
	Cause string `json:"cause,omitempty"`
	// Annotation is the pod annotation that refused the pod, if one did.
	Annotation string `json:"annotation,omitempty"`
	// DurationMicros is the plug-in's own measure of the verb.
	DurationMicros int64 `json:"durationMicros"`
	// Records are the plug-in's JSON log records of this verb, in order.
	Records []json.RawMessage `json:"records,omitempty"`
}

// ErrTooLarge is returned for a frame longer than MaxMessage.
var ErrTooLarge = errors.New("agentapi: message larger than the limit")

// WriteMessage frames v as JSON.
func WriteMessage(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("agentapi: encoding: %w", err)
	}
	if len(body) > MaxMessage {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(body))
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	_, err = w.Write(buf)
	return err
}

// ReadMessage reads one frame into v. It rejects oversized frames before
// reading their body and bodies that are not one JSON value of v's shape.
func ReadMessage(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessage {
		return fmt.Errorf("%w: header says %d bytes", ErrTooLarge, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return fmt.Errorf("agentapi: short message: %w", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("agentapi: garbled message: %w", err)
	}
	return nil
}

// Validate checks a request's shape; the error names the field.
func (r *Request) Validate() error {
	if r.Version != Version {
		return fmt.Errorf("unsupported protocol version %d (this agent speaks %d)", r.Version, Version)
	}
	switch r.Kind {
	case KindPod:
		if r.Pod == nil {
			return errors.New("kind pod without a pod field")
		}
		if r.Pod.Namespace == "" || r.Pod.Name == "" {
			return errors.New("pod.namespace and pod.name are required")
		}
		if r.Pod.WaitMillis < 0 {
			return errors.New("pod.waitMillis is negative")
		}
	case KindReport:
		if r.Report == nil {
			return errors.New("kind report without a report field")
		}
		if r.Report.Verb == "" {
			return errors.New("report.verb is required")
		}
	default:
		return fmt.Errorf("unknown kind %q", r.Kind)
	}
	return nil
}
