package netns

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/inplace"
	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/podnetns"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// TestInPlaceNetnsLock: the repair takes the plug-in's netns lock. While
// another mesh-cni process holds it (flock on the runtime's bind mount, as
// ADD takes it) the repair waits, gives up after its wait having changed
// nothing, and succeeds once the lock is free.
func TestInPlaceNetnsLock(t *testing.T) {
	b := nat.NFT
	live := startPod(t, "productpage", redirecttest.SeedAnnotations, cnitest.Cgroupfs)
	cfg := pluginConfig(t, newPlugin(t, b))
	holder := exec.Command("flock", "--exclusive", live.ns.Path(), "sh", "-c", "echo held; read _")
	stdin, _ := holder.StdinPipe()
	out, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = holder.Wait() })
	if _, err := out.Read(make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	_, err := repairer(300*time.Millisecond).RepairInPlace(context.Background(), live.pod, []string{"198.18.0.5"}, cfg)
	if err == nil || !strings.Contains(err.Error(), "another mesh-cni process") {
		t.Fatalf("repair while the netns is locked: %v", err)
	}
	nothingOfOurs(t, live.ns, b)
	if recs := records(t, cfg, live.pod.Metadata.UID); len(recs) > 0 {
		t.Fatalf("a failed repair wrote %+v", recs)
	}
	stdin.Close()
	_ = holder.Wait()
	if _, err := repairer(3*time.Second).RepairInPlace(context.Background(), live.pod, []string{"198.18.0.5"}, cfg); err != nil {
		t.Fatal(err)
	}
}

// inPlaceRounds: how often a real ADD and a repair race on one netns.
const inPlaceRounds = 30

// TestInPlaceConcurrentAdd: the runtime's ADD (the real binary, through
// the bind mount) and the agent's repair (through /proc) of one netns at
// once, round after round: both succeed and the kernel holds the seed's
// rules exactly once.
func TestInPlaceConcurrentAdd(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			want := seedReference(t, b)
			for round := range inPlaceRounds {
				err := func() error {
					live := startPod(t, "race", redirecttest.SeedAnnotations, drivers(b))
					defer live.procs.Close()
					defer live.ns.Delete()
					p := newPlugin(t, b, live.core)
					cfg := pluginConfig(t, p)
					errs := make([]error, 2)
					var wg sync.WaitGroup
					wg.Add(2)
					go func() { defer wg.Done(); errs[0] = run(p.cmd("ADD", live.ns, "race")) }()
					go func() {
						defer wg.Done()
						_, errs[1] = repairer(10*time.Second).RepairInPlace(context.Background(), live.pod, []string{"198.18.0.5"}, cfg)
					}()
					wg.Wait()
					if err := errors.Join(errs...); err != nil {
						return err
					}
					return holdsExactly(t, p, live.ns, "race", want)
				}()
				if err != nil {
					t.Fatalf("round %d of %d: %v", round+1, inPlaceRounds, err)
				}
			}
		})
	}
}

// TestInPlaceGarbage: bad input is an error naming what is wrong, and
// nothing is programmed or recorded.
func TestInPlaceGarbage(t *testing.T) {
	b := nat.Legacy
	live := startPod(t, "productpage", redirecttest.SeedAnnotations, cnitest.Cgroupfs)
	cfg := pluginConfig(t, newPlugin(t, b))
	stopped := startPod(t, "stopped", nil, cnitest.Systemd)
	stopped.procs.Close()
	with := func(mod func(p *pod.Pod)) *pod.Pod {
		c := *live.pod
		c.Metadata.Annotations = map[string]string{}
		for k, v := range live.pod.Metadata.Annotations {
			c.Metadata.Annotations[k] = v
		}
		mod(&c)
		return &c
	}
	cases := []struct {
		name string
		pod  *pod.Pod
		ips  []string
		cfg  *config.Config
		want string
		is   error
	}{
		{"bad annotation", with(func(p *pod.Pod) { p.Metadata.Annotations[redirect.AnnoIncludeInboundPorts] = "80,notaport" }), nil, cfg, redirect.AnnoIncludeInboundPorts, nil},
		{"no UID", with(func(p *pod.Pod) { p.Metadata.UID = "" }), nil, cfg, "metadata.uid", nil},
		{"UID not a UUID", with(func(p *pod.Pod) { p.Metadata.UID = "../../1" }), nil, cfg, "UID", podnetns.ErrBadUID},
		{"no plug-in config", live.pod, nil, nil, "cfg", nil},
		{"nil pod", nil, nil, cfg, "pod", nil},
		{"bad podIPs", live.pod, []string{"198.18.0.5", "not-an-ip"}, cfg, "podIPs[1]", nil},
		{"no sidecar", with(func(p *pod.Pod) { p.Spec.Containers = p.Spec.Containers[:1] }), nil, cfg, "istio-proxy", inplace.ErrNotQualified},
		{"excluded namespace", with(func(p *pod.Pod) { p.Metadata.Namespace = "kube-system" }), nil, cfg, "excluded", inplace.ErrNotQualified},
		{"not running", stopped.pod, nil, cfg, stopped.pod.Metadata.UID, podnetns.ErrNoProcess},
	}
	r := repairer(3 * time.Second)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := r.RepairInPlace(context.Background(), c.pod, c.ips, c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) || c.is != nil && !errors.Is(err, c.is) {
				t.Fatalf("RepairInPlace: %v; want an error naming %q", err, c.want)
			}
			if _, _, err := r.Verify(context.Background(), c.pod, c.ips, c.cfg); err == nil {
				t.Fatal("Verify: no error")
			}
		})
	}
	nothingOfOurs(t, live.ns, b)
	nothingOfOurs(t, stopped.ns, b)
	if recs := records(t, cfg, live.pod.Metadata.UID); len(recs) > 0 {
		t.Fatalf("bad input wrote %+v", recs)
	}
}

// faulty wraps the real tables with hooks around each Restore.
type faulty struct {
	*nat.Netns
	beforeRestore func(fam redirect.Family) error
	afterRestore  func(fam redirect.Family) error
}

func (f *faulty) Restore(fam redirect.Family, script string) error {
	if f.beforeRestore != nil {
		if err := f.beforeRestore(fam); err != nil {
			return err
		}
	}
	if err := f.Netns.Restore(fam, script); err != nil {
		return err
	}
	if f.afterRestore != nil {
		return f.afterRestore(fam)
	}
	return nil
}

// TestInPlaceRollback: the IPv6 restore fails after IPv4's went in — as
// iptables-restore refusing it, or as a restore that reports failure after
// its commit (killed, timed out). The repair fails and the netns holds
// nothing of ours in either family (no half-programmed pod), and nothing
// is recorded.
func TestInPlaceRollback(t *testing.T) {
	fail6 := func(fam redirect.Family) error {
		if fam == redirect.IPv6 {
			return errors.New("injected: ip6tables-restore failed")
		}
		return nil
	}
	for _, b := range backends {
		for _, after := range []bool{false, true} {
			name := string(b) + "/refused"
			if after {
				name = string(b) + "/failed after commit"
			}
			t.Run(name, func(t *testing.T) {
				live := startPod(t, "productpage", redirecttest.SeedAnnotations, drivers(b))
				cfg := pluginConfig(t, newPlugin(t, b))
				r := repairer(3 * time.Second)
				r.NewTables = func(path string, b nat.Backend) redirect.Tables {
					f := &faulty{Netns: &nat.Netns{Path: path, Backend: b, LockWait: 3e9}}
					if after {
						f.afterRestore = fail6
					} else {
						f.beforeRestore = fail6
					}
					return f
				}
				_, err := r.RepairInPlace(context.Background(), live.pod, []string{"198.18.0.5", "2001:db8::5"}, cfg)
				if err == nil || !strings.Contains(err.Error(), "injected") {
					t.Fatalf("RepairInPlace: %v; want the injected failure", err)
				}
				nothingOfOurs(t, live.ns, b)
				if recs := records(t, cfg, live.pod.Metadata.UID); len(recs) > 0 {
					t.Fatalf("a failed repair wrote %+v", recs)
				}
			})
		}
	}
}

// TestInPlaceNetnsGone: the pod exits and its netns is deleted while the
// repair programs it. The repair fails saying the pod went away, writes no
// record, and leaves nothing behind (the orphaned netns dies with the
// handle).
func TestInPlaceNetnsGone(t *testing.T) {
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			live := startPod(t, "productpage", redirecttest.SeedAnnotations, drivers(b))
			cfg := pluginConfig(t, newPlugin(t, b))
			r := repairer(3 * time.Second)
			r.NewTables = func(path string, b nat.Backend) redirect.Tables {
				return &faulty{Netns: &nat.Netns{Path: path, Backend: b, LockWait: 3e9}, afterRestore: func(redirect.Family) error {
					live.procs.Close()
					live.ns.Delete()
					return nil
				}}
			}
			_, err := r.RepairInPlace(context.Background(), live.pod, []string{"198.18.0.5"}, cfg)
			if err == nil || !errors.Is(err, podnetns.ErrNoProcess) {
				t.Fatalf("RepairInPlace: %v; want the pod gone", err)
			}
			if recs := records(t, cfg, live.pod.Metadata.UID); len(recs) > 0 {
				t.Fatalf("a repair of a vanished pod wrote %+v", recs)
			}
		})
	}
}
