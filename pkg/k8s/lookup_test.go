package k8s

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

// scripted answers GetPod with errs in turn, then the pod asked for.
type scripted struct {
	errs  []error
	calls int
}

func (s *scripted) GetPod(ctx context.Context, ns, name string) (*pod.Pod, error) {
	s.calls++
	if s.calls <= len(s.errs) {
		return nil, s.errs[s.calls-1]
	}
	return thePod(), nil
}

var ref = pod.Ref{Namespace: "ns", Name: "p", UID: "u1"}

func thePod() *pod.Pod {
	return &pod.Pod{Kind: "Pod", APIVersion: "v1", Metadata: pod.Metadata{Namespace: "ns", Name: "p", UID: "u1"}}
}

// answers returns the given pods in turn (nil too), then the pod asked for.
type answers struct {
	pods  []*pod.Pod
	calls int
}

func (a *answers) GetPod(ctx context.Context, ns, name string) (*pod.Pod, error) {
	a.calls++
	if a.calls <= len(a.pods) {
		return a.pods[a.calls-1], nil
	}
	return thePod(), nil
}

// TestNotThePod: a 200 that is not the pod asked for is retried, and once
// the budget is spent it is "the API could not answer", never a pod.
func TestNotThePod(t *testing.T) {
	other := func(f func(*pod.Pod)) *pod.Pod { p := thePod(); f(p); return p }
	wrong := map[string]*pod.Pod{
		"nil":         nil,
		"empty":       {},
		"kind":        other(func(p *pod.Pod) { p.Kind = "PodTemplate" }),
		"apiVersion":  other(func(p *pod.Pod) { p.APIVersion = "v2" }),
		"namespace":   other(func(p *pod.Pod) { p.Metadata.Namespace = "other" }),
		"name":        other(func(p *pod.Pod) { p.Metadata.Name = "other" }),
		"uid":         other(func(p *pod.Pod) { p.Metadata.UID = "u2" }),
		"uid-missing": other(func(p *pod.Pod) { p.Metadata.UID = "" }),
	}
	for name, p := range wrong {
		t.Run(name, func(t *testing.T) {
			a := &answers{pods: []*pod.Pod{p, p}}
			got, err := GetPod(context.Background(), a, ref, quick, log)
			if err != nil || a.calls != 3 || got.Metadata.UID != "u1" {
				t.Fatalf("a wrong answer then the pod: %v after %d calls", err, a.calls)
			}
			always := &answers{pods: repeatPod(p, 100000)}
			got, err = GetPod(context.Background(), always, ref, quick, log)
			if got != nil || !errors.Is(err, ErrUnavailable) || !errors.Is(err, pod.ErrNotThePod) || !strings.Contains(err.Error(), "ns/p") {
				t.Fatalf("only wrong answers: %v, %v", got, err)
			}
		})
	}
	// Without a UID from the runtime, any UID is the pod's.
	a := &answers{pods: []*pod.Pod{other(func(p *pod.Pod) { p.Metadata.UID = "u2" })}}
	if _, err := GetPod(context.Background(), a, pod.Ref{Namespace: "ns", Name: "p"}, quick, log); err != nil || a.calls != 1 {
		t.Fatalf("no UID asked: %v after %d calls", err, a.calls)
	}
}

func repeatPod(p *pod.Pod, n int) []*pod.Pod {
	out := make([]*pod.Pod, n)
	for i := range out {
		out[i] = p
	}
	return out
}

var quick = Retry{Budget: 300 * time.Millisecond, PerRequest: 50 * time.Millisecond, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
var log = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestGetPod(t *testing.T) {
	unavailable := &APIError{Code: 503, Reason: "ServiceUnavailable", Message: "down"}
	cases := []struct {
		name      string
		errs      []error
		wantCalls func(int) bool
		wantErr   string
		unavail   bool
	}{
		{"first try", nil, func(n int) bool { return n == 1 }, "", false},
		{"transient then ok", []error{unavailable, errors.New("connection refused")}, func(n int) bool { return n == 3 }, "", false},
		{"404 is final and names the pod", []error{&APIError{Code: 404, Reason: "NotFound", Message: `pods "p" not found`}}, func(n int) bool { return n == 1 }, "pod ns/p does not exist", false},
		{"403 is final", []error{&APIError{Code: 403, Reason: "Forbidden", Message: `pods "p" is forbidden: rbac`}}, func(n int) bool { return n == 1 }, "is forbidden: rbac", true},
		{"budget spent", repeat(unavailable, 10000), func(n int) bool { return n > 3 }, "after", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := &scripted{errs: c.errs}
			_, err := GetPod(context.Background(), g, ref, quick, log)
			if !c.wantCalls(g.calls) {
				t.Errorf("%d calls", g.calls)
			}
			if (err == nil) != (c.wantErr == "") || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("err = %v, want %q", err, c.wantErr)
			}
			if errors.Is(err, ErrUnavailable) != c.unavail {
				t.Fatalf("errors.Is(ErrUnavailable) = %v, want %v", !c.unavail, c.unavail)
			}
		})
	}
}

func repeat(err error, n int) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}

// TestPerRequestTimeout: a request that hangs is cut at PerRequest and retried.
func TestPerRequestTimeout(t *testing.T) {
	// Returning at all proves the per-request and total bounds hold.
	_, err := GetPod(context.Background(), hanging{}, ref, quick, log)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

type hanging struct{}

func (hanging) GetPod(ctx context.Context, ns, name string) (*pod.Pod, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
