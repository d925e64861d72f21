// Package k8s reads the pod being set up from the Kubernetes API.
package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

// PodGetter is one GET of one pod; the real one is Client. Errors that
// are HTTP answers are *APIError (classify reads them).
// What it returns is checked against the pod asked for (pod.CheckIdentity)
// by GetPod, whatever the source.
type PodGetter interface {
	GetPod(ctx context.Context, namespace, name string) (*pod.Pod, error)
}

// ErrUnavailable wraps every failure that means "the API could not answer"
// (timeouts, refused connections, 5xx, 429, auth problems, a 200 that is
// not the pod asked for): the caller's failure policy decides what happens
// then. A 404 is an answer, not this.
var ErrUnavailable = errors.New("kubernetes API unavailable")

// Retry bounds the lookup.
type Retry struct {
	Budget     time.Duration // total time for all attempts
	PerRequest time.Duration // one attempt's timeout
	Backoff    time.Duration // first wait between attempts, doubling
	MaxBackoff time.Duration
}

// DefaultRetry is used with the configured budget.
func DefaultRetry(budget time.Duration) Retry {
	return Retry{Budget: budget, PerRequest: 5 * time.Second, Backoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}
}

// GetPod reads the pod ref names, retrying transient failures with backoff
// inside the budget. A missing pod is a final error naming it; a budget
// spent on failures returns an error wrapping ErrUnavailable.
//
// An answer that is not the pod asked for (pod.CheckIdentity) is retried
// like a 5xx, then reported as ErrUnavailable: it must never be decided on
// (an empty object would read as "no sidecar, not eligible"; another pod's
// object would program that pod's settings). A UID mismatch with the same
// namespace and name usually means the pod was deleted and recreated under
// its name (StatefulSets do this): from a quorum read, asking again will
// not bring the old pod back, but a cached source (a caching proxy, a node
// agent's informer) may lag the recreation either way, and a runtime
// retrying a sandbox of the new pod may be ahead of it. Retrying within the
// budget covers the lag; after it the policy decides: Block fails the ADD
// (the kubelet tears down a deleted pod's sandbox anyway), Alert logs it.
func GetPod(ctx context.Context, g PodGetter, ref pod.Ref, r Retry, log *slog.Logger) (*pod.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, r.Budget)
	defer cancel()
	wait := r.Backoff
	for attempt := 1; ; attempt++ {
		reqCtx, reqCancel := context.WithTimeout(ctx, r.PerRequest)
		p, err := g.GetPod(reqCtx, ref.Namespace, ref.Name)
		reqCancel()
		if err == nil {
			err = pod.CheckIdentity(p, ref)
		}
		if err == nil {
			return p, nil
		}
		switch classify(err) {
		case notFound:
			return nil, fmt.Errorf("pod %s does not exist in the Kubernetes API: %w", ref, err)
		case final:
			return nil, fmt.Errorf("reading pod %s: %w: %w", ref, ErrUnavailable, err)
		}
		log.Debug("pod lookup failed, will retry", "attempt", attempt, "error", err)
		pause := wait/2 + rand.N(wait/2+1)
		if after := retryAfter(err); after > 0 {
			// The server said when to ask again: earlier is pointless, and
			// a wait past the budget is an answer now.
			if deadline, _ := ctx.Deadline(); time.Until(deadline) <= after {
				return nil, fmt.Errorf("reading pod %s: %w: the API server asks to retry after %s, past the %s budget, after %d attempts: %w",
					ref, ErrUnavailable, after, r.Budget, attempt, err)
			}
			pause = max(pause, after)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reading pod %s: %w after %d attempts in %s: %w", ref, ErrUnavailable, attempt, r.Budget, err)
		case <-time.After(pause):
		}
		wait = min(2*wait, r.MaxBackoff)
	}
}
