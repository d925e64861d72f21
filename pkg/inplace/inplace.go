// Package inplace programs the seed's redirect into the netns of a pod that
// is already running, from the node agent, exactly as the plug-in's ADD
// would have: the same decision (podcheck), the same rules (podplan), the
// same netns lock and apply path (redirect.ApplyAll), then a Verify and a
// sandbox record so the pod counts as meshed. It is the node agent's
// REPAIR_MODE=repair; the agent needs hostPID, NET_ADMIN and SYS_ADMIN.
package inplace

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/podnetns"
	"github.com/meshcni/mesh-cni/pkg/podplan"
	"github.com/meshcni/mesh-cni/pkg/redirect"
)

// Reason is the sandbox record's reason for a pod repaired in place.
const Reason = "repaired in place by the node agent"

// ErrNotQualified: podcheck, on the pod as it is now, does not redirect it
// (its annotations changed, or it is excluded): nothing is programmed.
var ErrNotQualified = errors.New("the pod does not qualify for the redirect")

// Repairer implements the repair controller's InPlace interface.
type Repairer struct {
	// ProcRoot is the host's /proc as the agent sees it (hostPID).
	ProcRoot string
	// NewTables opens a netns's tables with a resolved backend.
	NewTables func(netnsPath string, backend nat.Backend) redirect.Tables
	// ResolveBackend turns "auto" into legacy or nft (in the host netns).
	ResolveBackend func(nat.Backend) (nat.Backend, error)
	// Now stamps the sandbox record.
	Now func() time.Time
}

// New is the production Repairer: the host's /proc, the host's iptables
// tools, as the plug-in uses them.
func New() *Repairer {
	return &Repairer{
		ProcRoot: "/proc",
		NewTables: func(path string, b nat.Backend) redirect.Tables {
			return &nat.Netns{Path: path, Backend: b, LockWait: config.DefaultLockWait}
		},
		ResolveBackend: nat.Backend.Resolve,
		Now:            time.Now,
	}
}

// target is one repair's validated input and opened netns.
type target struct {
	plan    podplan.Plan
	fams    []redirect.Family
	backend nat.Backend
	ns      *podnetns.Handle
	tables  redirect.Tables
}

// open validates the input, decides, and opens the pod's netns; nothing is
// changed. The caller closes t.ns.
func (r *Repairer) open(ctx context.Context, p *pod.Pod, podIPs []string, cfg *config.Config) (*target, error) {
	if err := checkInput(p, cfg); err != nil {
		return nil, err
	}
	fams, err := podplan.Families(podIPs)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", ref(p), err)
	}
	pl, err := podplan.Make(p, cfg, fams)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w; nothing was programmed", ref(p), err)
	}
	if !pl.Verdict.Redirect {
		return nil, fmt.Errorf("pod %s: %w: %s; nothing was programmed", ref(p), ErrNotQualified, pl.Verdict.Reason)
	}
	backend, err := r.ResolveBackend(cfg.Backend)
	if err != nil {
		return nil, fmt.Errorf("iptablesBackend: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ns, err := podnetns.Open(r.ProcRoot, p.Metadata.UID)
	if err != nil {
		return nil, fmt.Errorf("pod %s: finding its netns: %w", ref(p), err)
	}
	return &target{plan: pl, fams: fams, backend: backend, ns: ns, tables: r.NewTables(ns.Path(), backend)}, nil
}

func checkInput(p *pod.Pod, cfg *config.Config) error {
	switch {
	case cfg == nil:
		return errors.New("cfg: no plug-in config (is mesh-cni installed in the chain?)")
	case p == nil:
		return errors.New("pod: nil")
	case p.Metadata.Namespace == "" || p.Metadata.Name == "":
		return fmt.Errorf("pod %q: metadata.namespace and metadata.name are required", ref(p))
	case p.Metadata.UID == "":
		return fmt.Errorf("pod %s: metadata.uid is empty: its processes cannot be found", ref(p))
	}
	return nil
}

func ref(p *pod.Pod) string { return p.Metadata.Namespace + "/" + p.Metadata.Name }

// verify compares every family; the detail joins the diffs.
func verify(t redirect.Tables, rss []redirect.Ruleset) (ok bool, detail string, err error) {
	var diffs []string
	for _, rs := range rss {
		if err := redirect.Verify(t, rs); err != nil {
			diffs = append(diffs, err.Error())
		}
	}
	if len(diffs) > 0 {
		return false, strings.Join(diffs, "\n"), nil
	}
	return true, "", nil
}

// Verify reports whether the running pod's netns holds exactly what ADD
// would program for it now (detail: the difference). Nothing is changed.
func (r *Repairer) Verify(ctx context.Context, p *pod.Pod, podIPs []string, cfg *config.Config) (bool, string, error) {
	t, err := r.open(ctx, p, podIPs, cfg)
	if err != nil {
		return false, "", err
	}
	defer t.ns.Close()
	ok, detail, err := verify(t.tables, t.plan.Rulesets)
	if err != nil || ok {
		return ok, detail, err
	}
	return false, fmt.Sprintf("pod %s (netns of process %d): %s", ref(p), t.ns.PID, detail), nil
}
