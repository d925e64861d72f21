package plugin

import (
	"os"
	"os/exec"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/podcheck"
	"github.com/meshcni/mesh-cni/pkg/redirect"
)

// prevResultFamilies: IPv4 always (the seed's rules); IPv6 too when the
// primary plug-in gave the pod an IPv6 address. Without a result (DEL may
// come without one) both are looked at.
func prevResultFamilies(prev types.Result) []redirect.Family {
	fams := []redirect.Family{redirect.IPv4}
	if prev == nil {
		return append(fams, redirect.IPv6)
	}
	res, err := current.NewResultFromResult(prev)
	if err != nil {
		return fams
	}
	for _, ip := range res.IPs {
		if ip.Address.IP.To4() == nil {
			return append(fams, redirect.IPv6)
		}
	}
	return fams
}

// Del removes the pod's redirect. It succeeds when the netns is gone: the
// rules went with it.
func (p *Plugin) Del(args *skel.CmdArgs) (err error) {
	inv, done, err := p.begin(args, "DEL")
	if err != nil {
		return err
	}
	defer func() { done(err) }()
	if !inv.isK8s {
		return nil
	}
	forgetSandbox(inv, args)
	if v, decided := podcheck.PreLookup(inv.pod.Namespace, inv.pod.Name, inv.cfg.Pods); decided {
		inv.log.Debug("nothing to remove", "reason", v.Reason)
		return nil
	}
	// Anything that is not an enterable netns is gone for DEL: its rules
	// went with it. Failing here would stop libcni's DEL (last plug-in
	// first, stopping at an error) before the primary frees the pod's IP.
	if err := checkNetns(args.Netns); err != nil {
		inv.log.Info("netns gone or not a network namespace; nothing to remove", "error", err.Error())
		return nil
	}
	backend, err := p.ResolveBackend(inv.cfg.Backend)
	if err != nil {
		return cniErr(CodeProgramming, "iptablesBackend: %v", err)
	}
	tables := p.NewTables(args.Netns, backend)
	for _, fam := range prevResultFamilies(inv.cfg.Net.PrevResult) {
		if err := redirect.Cleanup(tables, fam); err != nil {
			// Deleted or unmounted meanwhile: gone as well.
			if nerr := checkNetns(args.Netns); nerr != nil {
				inv.log.Info("netns went away during DEL; nothing left to remove", "error", nerr.Error())
				return nil
			}
			return cniErr(CodeProgramming, "removing redirect of pod %s: %v", inv.pod, err)
		}
	}
	inv.log.Info("redirect removed")
	inv.out.decide(agentapi.DecisionNotRedirected, "redirect removed")
	return nil
}

// enterableNetns fails ADD and CHECK, naming CNI_NETNS, when the path is
// not a network namespace the rules could be programmed in.
func enterableNetns(inv *invocation, path string) error {
	if err := checkNetns(path); err != nil {
		return cniErr(types.ErrInvalidEnvironmentVariables,
			"CNI_NETNS %s of pod %s is not an enterable network namespace: %v", path, inv.pod, err)
	}
	return nil
}

// Check compares what the kernel holds in the pod's netns with what ADD
// would program now, and fails with the difference.
func (p *Plugin) Check(args *skel.CmdArgs) (err error) {
	inv, done, err := p.begin(args, "CHECK")
	if err != nil {
		return err
	}
	defer func() { done(err) }()
	if inv.cfg.Net.PrevResult == nil {
		return cniErr(types.ErrInvalidNetworkConfig, "mesh-cni must be chained: CHECK got no prevResult")
	}
	pl, err := p.plan(inv, prevResultFamilies(inv.cfg.Net.PrevResult))
	if err != nil || pl == nil {
		return err
	}
	if err := enterableNetns(inv, args.Netns); err != nil {
		return err
	}
	tables := p.NewTables(args.Netns, pl.backend)
	var diffs []string
	for _, rs := range pl.rulesets {
		if err := redirect.Verify(tables, rs); err != nil {
			diffs = append(diffs, err.Error())
		}
	}
	if len(diffs) > 0 {
		return cniErr(CodeRulesDiffer, "pod %s: %s", inv.pod, strings.Join(diffs, "\n"))
	}
	return nil
}

// GC prunes the sandbox records of attachments the runtime no longer has;
// a pod's rules live in its netns and die with it.
func (p *Plugin) GC(args *skel.CmdArgs) error {
	inv, done, err := p.begin(args, "GC")
	if err != nil {
		return err
	}
	pruneSandboxes(inv, args.StdinData)
	done(nil)
	return nil
}

// Status reports whether the plug-in could serve an ADD now: its
// kubeconfig is readable and the iptables tools are installed.
func (p *Plugin) Status(args *skel.CmdArgs) (err error) {
	inv, done, err := p.begin(args, "STATUS")
	if err != nil {
		return err
	}
	defer func() { done(err) }()
	return status(inv.cfg)
}

func status(cfg *config.Config) error {
	if cfg.Kubeconfig != "" {
		if _, err := os.Stat(cfg.Kubeconfig); err != nil {
			return cniErr(types.ErrPluginNotAvailable, "kubeconfig %s: %v", cfg.Kubeconfig, err)
		}
	}
	for _, tool := range []string{"iptables-legacy-restore", "iptables-nft-restore"} {
		if _, err := exec.LookPath(tool); err == nil {
			return nil
		}
	}
	return cniErr(types.ErrPluginNotAvailable, "no iptables-restore (legacy or nft) on PATH")
}
