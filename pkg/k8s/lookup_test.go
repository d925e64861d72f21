package k8s

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

// scripted answers GetPod with errs in turn, then the pod.
type scripted struct {
	errs  []error
	calls int
}

func (s *scripted) GetPod(ctx context.Context, ns, name string) (*pod.Pod, error) {
	s.calls++
	if s.calls <= len(s.errs) {
		return nil, s.errs[s.calls-1]
	}
	return &pod.Pod{}, nil
}

var quick = Retry{Budget: 300 * time.Millisecond, PerRequest: 50 * time.Millisecond, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
var log = slog.New(slog.NewTextHandler(io.Discard, nil))
var pods = schema.GroupResource{Resource: "pods"}

func TestGetPod(t *testing.T) {
	unavailable := apierrors.NewServiceUnavailable("down")
	cases := []struct {
		name      string
		errs      []error
		wantCalls func(int) bool
		wantErr   string
		unavail   bool
	}{
		{"first try", nil, func(n int) bool { return n == 1 }, "", false},
		{"transient then ok", []error{unavailable, errors.New("connection refused")}, func(n int) bool { return n == 3 }, "", false},
		{"404 is final and names the pod", []error{apierrors.NewNotFound(pods, "p")}, func(n int) bool { return n == 1 }, "pod ns/p does not exist", false},
		{"403 is final", []error{apierrors.NewForbidden(pods, "p", errors.New("rbac"))}, func(n int) bool { return n == 1 }, "forbidden", true},
		{"budget spent", repeat(unavailable, 10000), func(n int) bool { return n > 3 }, "after", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := &scripted{errs: c.errs}
			_, err := GetPod(context.Background(), g, "ns", "p", quick, log)
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
	_, err := GetPod(context.Background(), hanging{}, "ns", "p", quick, log)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

type hanging struct{}

func (hanging) GetPod(ctx context.Context, ns, name string) (*pod.Pod, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
