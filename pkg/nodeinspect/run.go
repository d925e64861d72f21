package nodeinspect

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Kubectl runs kubectl with the operator's --kubeconfig and --context.
type Kubectl interface {
	Run(ctx context.Context, stdin []byte, args ...string) (stdout []byte, err error)
}

// Exec is the real kubectl.
type Exec struct {
	Path       string // "kubectl" unless set
	Kubeconfig string
	Context    string
}

// Run implements Kubectl; the error carries kubectl's stderr.
func (k Exec) Run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	path := k.Path
	if path == "" {
		path = "kubectl"
	}
	var global []string
	if k.Kubeconfig != "" {
		global = append(global, "--kubeconfig", k.Kubeconfig)
	}
	if k.Context != "" {
		global = append(global, "--context", k.Context)
	}
	cmd := exec.CommandContext(ctx, path, append(global, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// Outcome is what the inspector printed and its exit code.
type Outcome struct {
	Output []byte
	Exit   int
}

// stuck are the waiting reasons that do not resolve by waiting.
var stuck = map[string]bool{
	"CreateContainerError": true, "CreateContainerConfigError": true, "InvalidImageName": true,
	"ErrImagePull": true, "ImagePullBackOff": true, "ErrImageNeverPull": true, "RunContainerError": true,
}

// Run creates the inspector pod, waits for it to end, collects its output
// and exit code, and deletes it whatever happened.
func Run(ctx context.Context, k Kubectl, s Spec, timeout time.Duration) (Outcome, error) {
	manifest, err := Manifest(s)
	if err != nil {
		return Outcome{}, err
	}
	out, err := k.Run(ctx, manifest, "create", "-f", "-", "-o", "jsonpath={.metadata.name}")
	if err != nil {
		return Outcome{}, fmt.Errorf("creating the inspector pod on node %s: %w", s.Node, err)
	}
	name := strings.TrimSpace(string(out))
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = k.Run(dctx, nil, "delete", "pod", "-n", s.Namespace, name, "--wait=false", "--ignore-not-found")
	}()
	deadline := time.Now().Add(timeout)
	var phase, waiting string
	for {
		st, err := k.Run(ctx, nil, "get", "pod", "-n", s.Namespace, name, "-o",
			`jsonpath={.status.phase}{"\t"}{.status.containerStatuses[0].state.terminated.exitCode}{"\t"}{.status.containerStatuses[0].state.waiting.reason}{"\t"}{.status.containerStatuses[0].state.waiting.message}`)
		if err != nil {
			return Outcome{}, err
		}
		f := strings.SplitN(string(st), "\t", 4)
		for len(f) < 4 {
			f = append(f, "")
		}
		phase, waiting = f[0], f[2]
		if (phase == "Succeeded" || phase == "Failed") && f[1] != "" {
			code, err := strconv.Atoi(f[1])
			if err != nil {
				return Outcome{}, fmt.Errorf("inspector pod %s: exit code %q", name, f[1])
			}
			logs, err := k.Run(ctx, nil, "logs", "-n", s.Namespace, name)
			if err != nil {
				return Outcome{}, err
			}
			return Outcome{Output: logs, Exit: code}, nil
		}
		if stuck[waiting] {
			return Outcome{}, fmt.Errorf("inspector pod %s/%s on node %s cannot start: %s: %s", s.Namespace, name, s.Node, waiting, f[3])
		}
		if time.Now().After(deadline) {
			return Outcome{}, fmt.Errorf("inspector pod %s/%s on node %s did not finish within %s (phase %q %s)", s.Namespace, name, s.Node, timeout, phase, waiting)
		}
		select {
		case <-ctx.Done():
			return Outcome{}, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
