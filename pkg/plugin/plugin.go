// Package plugin is mesh-cni's CNI verbs: it passes the previous result
// through and programs the pod's redirect when the pod qualifies.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/k8s"
	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/podcheck"
	"github.com/meshcni/mesh-cni/pkg/podplan"
	"github.com/meshcni/mesh-cni/pkg/redirect"
)

// Deps are the plug-in's side effects, passed in so tests can choose them.
type Deps struct {
	// NewPodGetter builds the API client; it is only called for pods that
	// need a lookup (never for excluded namespaces).
	NewPodGetter func(kubeconfig string, perRequest time.Duration) (k8s.PodGetter, error)
	// NewTables opens a pod netns's nat tables with a resolved backend.
	NewTables func(netnsPath string, backend nat.Backend) redirect.Tables
	// ResolveBackend turns "auto" into legacy or nft.
	ResolveBackend func(nat.Backend) (nat.Backend, error)
	// Agent connects to the node agent (nil: never ask one).
	Agent func(socket string) AgentClient
}

// Real are the production dependencies.
func Real() Deps {
	return Deps{
		NewPodGetter: func(kc string, per time.Duration) (k8s.PodGetter, error) { return k8s.NewClient(kc, per) },
		NewTables: func(path string, b nat.Backend) redirect.Tables {
			return &nat.Netns{Path: path, Backend: b, LockWait: config.DefaultLockWait}
		},
		ResolveBackend: nat.Backend.Resolve,
		Agent:          RealAgent,
	}
}

// Plugin implements the CNI verbs.
type Plugin struct{ Deps }

// Funcs is what skel.PluginMainFuncs takes. Every verb is guarded so a
// panic becomes a CNI error instead of a stack trace on stdout, and every
// error is bounded (boundedErr) whatever input it quotes.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{
		Add:    guard(p.Add),
		Del:    guard(p.Del),
		Check:  guard(p.Check),
		GC:     guard(p.GC),
		Status: guard(p.Status),
	}
}

func guard(fn func(*skel.CmdArgs) error) func(*skel.CmdArgs) error {
	return func(args *skel.CmdArgs) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = cniErr(types.ErrInternal, "mesh-cni panicked: %v", r)
			}
			err = boundedErr(err)
		}()
		return fn(args)
	}
}

// invocation is one verb's parsed input.
type invocation struct {
	cfg   *config.Config
	log   *slog.Logger
	pod   pod.Ref
	isK8s bool
	agent AgentClient // nil without a node agent
	out   outcome
}

func (p *Plugin) begin(args *skel.CmdArgs, verb string) (*invocation, func(error), error) {
	cfg, err := config.Parse(args.StdinData)
	if err != nil {
		return nil, nil, cniErr(types.ErrInvalidNetworkConfig, "%v", err)
	}
	log, closeLog := newLogger(cfg.LogLevel, cfg.LogFile, args)
	ref, isK8s := parsePodRef(args.Args)
	if isK8s {
		log = log.With("pod", ref.String())
	}
	log = log.With("verb", verb)
	inv := &invocation{cfg: cfg, log: log, pod: ref, isK8s: isK8s, out: outcome{verb: verb}}
	p.withAgent(inv, args, cfg.LogLevel)
	return inv, func(err error) { p.finish(inv, args, err); closeLog() }, nil
}

// Add passes the previous result through and, for a qualifying pod,
// programs its redirect.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	res, err := p.AddResult(args)
	if err != nil {
		return err
	}
	return res.Print()
}

// AddResult is Add without the printing: the result it would print,
// already in the caller's cniVersion.
func (p *Plugin) AddResult(args *skel.CmdArgs) (_ types.Result, err error) {
	inv, done, err := p.begin(args, "ADD")
	if err != nil {
		return nil, err
	}
	defer func() { done(err) }()
	prev := inv.cfg.Net.PrevResult
	if prev == nil {
		return nil, cniErr(types.ErrInvalidNetworkConfig,
			"mesh-cni must be chained: ADD got no prevResult; list it after the primary CNI plug-in in a conflist")
	}
	if err := p.redirectPod(inv, args); err != nil {
		return nil, err
	}
	recordSandbox(inv, args, prevResultFamilies(prev))
	res, err := prev.GetAsVersion(inv.cfg.Net.CNIVersion)
	if err != nil {
		return nil, cniErr(types.ErrIncompatibleCNIVersion, "converting prevResult to cniVersion %s: %v", inv.cfg.Net.CNIVersion, err)
	}
	return res, nil
}

func (p *Plugin) redirectPod(inv *invocation, args *skel.CmdArgs) error {
	pl, err := p.plan(inv, prevResultFamilies(inv.cfg.Net.PrevResult))
	if err != nil || pl == nil {
		return err
	}
	if err := enterableNetns(inv, args.Netns); err != nil {
		return err
	}
	start := time.Now()
	tables := p.NewTables(args.Netns, pl.backend)
	// One hold of the netns lock across every family and the rollback: a
	// failed ADD's rollback must not remove the rules a concurrent ADD of
	// the same netns just programmed.
	err = redirect.ApplyAll(tables, pl.rulesets, func(fam redirect.Family, cerr error) {
		inv.log.Error("rollback failed", "family", fam.String(), "error", cerr)
	})
	if err != nil {
		hint := ""
		if errors.Is(err, exec.ErrNotFound) {
			hint = " (the node lacks the iptables tools: install the iptables package)"
		}
		return cniErr(CodeProgramming, "programming redirect for pod %s%s: %v", inv.pod, hint, err)
	}
	if n, ok := tables.(*nat.Netns); ok && n.IsolationErr != nil {
		inv.log.Warn("iptables ran without files-only NSS isolation", "error", n.IsolationErr)
	}
	inv.log.Info("redirect programmed", "backend", string(pl.backend), "families", len(pl.rulesets),
		"elapsed", time.Since(start).String())
	return nil
}

// plan is what a qualifying pod's netns must hold.
type plan struct {
	backend  nat.Backend
	rulesets []redirect.Ruleset
}

// plan decides, from CNI_ARGS, the config and the pod, whether the pod is
// redirected and with which rules. nil, nil means "leave the pod alone".
func (p *Plugin) plan(inv *invocation, fams []redirect.Family) (*plan, error) {
	if !inv.isK8s {
		inv.log.Info("not a Kubernetes pod (no K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS); passing through")
		inv.out.decide(agentapi.DecisionNotRedirected, "not a Kubernetes pod")
		return nil, nil
	}
	if v, decided := podcheck.PreLookup(inv.pod.Namespace, inv.pod.Name, inv.cfg.Pods); decided {
		inv.log.Info("pod not redirected", "reason", v.Reason)
		inv.out.decide(agentapi.DecisionNotRedirected, v.Reason)
		return nil, nil
	}
	pd, err := p.readPod(inv)
	if err != nil {
		if errors.Is(err, k8s.ErrUnavailable) && inv.cfg.FailurePolicy == config.Alert {
			inv.log.Error("POD STARTS WITHOUT MESH REDIRECT: the Kubernetes API could not answer and failurePolicy is Alert",
				"error", boundText(err.Error()))
			inv.out.decide(agentapi.DecisionBypassed, "the Kubernetes API could not answer and failurePolicy is Alert: "+boundText(err.Error()))
			return nil, nil
		}
		code := CodePodLookup
		if errors.Is(err, k8s.ErrUnavailable) {
			code = types.ErrTryAgainLater
		}
		return nil, cniErr(code, "%v (failurePolicy %s)", err, inv.cfg.FailurePolicy)
	}
	made, err := podplan.Make(pd, inv.cfg, fams)
	verdict := made.Verdict
	if !verdict.Redirect {
		inv.log.Info("pod not redirected", "reason", verdict.Reason)
		inv.out.decide(agentapi.DecisionNotRedirected, verdict.Reason)
		return nil, nil
	}
	inv.log.Info("pod qualifies", "reason", verdict.Reason, "proxyUID", verdict.Proxy.UID, "proxyGID", verdict.Proxy.GID)
	inv.out.decide(agentapi.DecisionRedirected, verdict.Reason) // unless programming fails
	if err != nil {
		return nil, cniErr(CodeBadAnnotation, "pod %s: %v; nothing was programmed", inv.pod, err)
	}
	backend, err := p.ResolveBackend(inv.cfg.Backend)
	if err != nil {
		return nil, cniErr(CodeProgramming, "iptablesBackend: %v", err)
	}
	return &plan{backend: backend, rulesets: made.Rulesets}, nil
}

func (p *Plugin) lookup(inv *invocation) (*pod.Pod, error) {
	retry := k8s.DefaultRetry(inv.cfg.PodLookupTimeout)
	getter, err := p.NewPodGetter(inv.cfg.Kubeconfig, retry.PerRequest)
	if err != nil {
		return nil, fmt.Errorf("reading pod %s: %w: %w", inv.pod, k8s.ErrUnavailable, err)
	}
	start := time.Now()
	pd, err := k8s.GetPod(context.Background(), getter, inv.pod, retry, inv.log)
	inv.log.Debug("pod lookup", "elapsed", time.Since(start).String(), "ok", err == nil)
	return pd, err
}
