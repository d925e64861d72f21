// Command bench measures mesh-cni's ADD against a floor taken in the same
// run, the way issue 2's "Speed" section defines it.
//
//	go run ./bench [-n 200] [-backend nft|legacy] [-out docs/bench.md] [-note "..."]
//
// Every iteration alternates, each in a fresh network namespace created and
// deleted outside the timed part:
//
//	ADD      the real, static, stripped mesh-cni binary exec'd with
//	         CNI_COMMAND=ADD for the seed's meshed productpage pod (one pod
//	         GET from a local read-only pod server, one iptables-restore);
//	floor    what no plug-in can avoid: one pod GET with a new client
//	         (pkg/k8s, the plug-in's) plus one exec of iptables-<backend>-restore --noflush of
//	         the same rules (redirect.FreshScript) in the netns;
//	nat      the floor's iptables-restore again, through pkg/nat.Netns as
//	         the plug-in runs it (files-only NSS mount namespace): the
//	         price of that isolation;
//	excluded ADD for a pod in kube-system: decided from CNI_ARGS, no API
//	         request (the pod server's counter proves it);
//	hello    exec of a trivial static Go binary: this machine's cost of
//	         starting a Go process at all.
//
// Every -verify-every iterations the netns's nat table is read back and
// compared with the seed's rules (not timed). The exit status is non-zero
// only for functional failures, never for timings. It must run as root.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

const (
	podNamespace = "default"
	podName      = "productpage-v1-bench"
	podIP        = "198.18.0.5/24"
	netnsPrefix  = "mcbench"
)

type options struct {
	n           int
	warmup      int
	backend     string
	out         string
	note        string
	verifyEvery int
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 200, "measured iterations (each: meshed ADD, floor, excluded ADD, hello)")
	flag.IntVar(&o.warmup, "warmup", 5, "iterations run first and not counted")
	flag.StringVar(&o.backend, "backend", "nft", "iptables backend for the plug-in and the floor: nft or legacy")
	flag.StringVar(&o.out, "out", "", "also write the figures as markdown to this file (e.g. docs/bench.md)")
	flag.StringVar(&o.note, "note", "", "free text about the machine's load, recorded in -out")
	flag.IntVar(&o.verifyEvery, "verify-every", 50, "read back and check the nat table every this many iterations")
	flag.Parse()
	if o.backend != "nft" && o.backend != "legacy" {
		fmt.Fprintf(os.Stderr, "bench: -backend %q: want nft or legacy\n", o.backend)
		os.Exit(2)
	}
	if o.n < 1 || o.verifyEvery < 1 || o.warmup < 0 {
		fmt.Fprintln(os.Stderr, "bench: -n and -verify-every must be positive, -warmup not negative")
		os.Exit(2)
	}
	if why := cnitest.RequireRoot(); why != "" {
		fmt.Fprintln(os.Stderr, "bench:", why)
		os.Exit(1)
	}
	os.Exit(run(o))
}

// env is everything the iterations share; cleanup undoes all of it once,
// whether the run ends, fails or is interrupted.
type env struct {
	o          options
	dir        string
	bin, hello string
	srv        *cnitest.PodServer
	kubeconfig string
	nets       tracker
	seed       redirect.Ruleset // the spec file's rules, for read-back
	script     string           // redirect.FreshScript of the seed ruleset, for the floor
	restore    string           // iptables-<backend>-restore
	save       string           // iptables-<backend>-save
	cleanOnce  sync.Once
	floorBin   string      // bench/floor: the static-Go floor
	agent      *agentBench // the in-process node agent of the agent path
}

func (e *env) cleanup() {
	e.cleanOnce.Do(func() {
		e.stopAgent()
		e.nets.deleteAll()
		if e.srv != nil {
			e.srv.Close()
		}
		if e.dir != "" {
			_ = os.RemoveAll(e.dir)
		}
	})
}

func run(o options) int {
	e := &env{o: o, restore: "iptables-" + o.backend + "-restore", save: "iptables-" + o.backend + "-save"}
	defer e.cleanup()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "\nbench: %v: deleting every namespace this run created\n", s)
		e.cleanup()
		os.Exit(130)
	}()
	if err := e.setup(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: setup:", err)
		return 1
	}
	res, err := e.measure()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAILED:", err)
		return 1
	}
	e.cleanup()
	res.leftNetns = e.nets.leftovers()
	report := res.text()
	fmt.Print(report)
	if len(res.leftNetns) > 0 {
		fmt.Fprintln(os.Stderr, "bench: namespaces left behind:", res.leftNetns)
		return 1
	}
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(res.markdown()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		fmt.Println("wrote", o.out)
	}
	return 0
}

func (e *env) setup() error {
	var err error
	if e.dir, err = os.MkdirTemp("", "mesh-cni-bench-"); err != nil {
		return err
	}
	for _, tool := range []string{e.restore, e.save, "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: install iptables and iproute2/util-linux", tool)
		}
	}
	fmt.Println("building mesh-cni and hello (static, stripped, as make build does) ...")
	if e.bin, err = cnitest.BuildBinary(e.dir, "./cmd/mesh-cni", "mesh-cni"); err != nil {
		return err
	}
	if e.hello, err = cnitest.BuildBinary(e.dir, "./bench/hello", "hello"); err != nil {
		return err
	}
	if e.floorBin, err = cnitest.BuildBinary(e.dir, "./bench/floor", "floor"); err != nil {
		return err
	}
	e.srv = cnitest.NewPodServer(cnitest.SeedPod(podNamespace, podName, redirecttest.SeedAnnotations))
	// One request per connection, as a fresh process would have: the floor's
	// in-process client must not reuse a kept-alive connection.
	e.srv.Config.SetKeepAlivesEnabled(false)
	if e.kubeconfig, err = e.srv.WriteKubeconfig(e.dir); err != nil {
		return err
	}
	settings, err := redirect.DefaultNode().Resolve(redirecttest.SeedAnnotations, redirect.Proxy{UID: 1337, GID: 1337})
	if err != nil {
		return err
	}
	e.script = redirect.FreshScript(redirect.Build(settings, redirect.IPv4))
	if e.seed, err = redirecttest.SeedRuleset(); err != nil {
		return err
	}
	return e.startAgent()
}

// series are the timings of one kind, one per measured iteration.
type series []time.Duration

type results struct {
	o                        options
	add, floor, get, restore series
	programming              series // the plug-in's own "redirect programmed" elapsed
	natRestore               series // the same restore through pkg/nat.Netns
	excl, hello              series
	agentAdd, staticFloor    series         // issue 7: ADD through the agent, static-Go floor
	flight                   []flightResult // ADDs in flight at once
	addRequests, exclReqs    int64
	verified                 int
	binSize, helloSize       int64
	loadBefore, loadAfter    string
	started                  time.Time
	elapsed                  time.Duration
	leftNetns                []string
}

func (e *env) measure() (*results, error) {
	r := &results{o: e.o, started: time.Now(), loadBefore: loadavg()}
	if st, err := os.Stat(e.bin); err == nil {
		r.binSize = st.Size()
	}
	if st, err := os.Stat(e.hello); err == nil {
		r.helloSize = st.Size()
	}
	total := e.o.warmup + e.o.n
	fmt.Printf("running %d warm-up + %d measured iterations, backend %s (load average %s) ...\n",
		e.o.warmup, e.o.n, e.o.backend, r.loadBefore)
	for i := 0; i < total; i++ {
		measured := i >= e.o.warmup
		k := i - e.o.warmup
		verify := measured && k%e.o.verifyEvery == 0

		// (a) meshed ADD through the real binary.
		before := e.srv.Requests.Load()
		var prog time.Duration
		d, err := e.iteration(func(n *cnitest.Netns) (time.Duration, error) {
			var d time.Duration
			var err error
			d, prog, err = e.add(n, podNamespace, podName)
			if err == nil && verify {
				err = e.verifySeed(n)
			}
			return d, err
		})
		if err != nil {
			return nil, fmt.Errorf("iteration %d: meshed ADD: %w", i, err)
		}
		reqs := e.srv.Requests.Load() - before
		if reqs < 1 {
			return nil, fmt.Errorf("iteration %d: meshed ADD made no pod request", i)
		}
		if measured {
			r.add = append(r.add, d)
			r.addRequests += reqs
			if prog > 0 {
				r.programming = append(r.programming, prog)
			}
		}

		// (a') meshed ADD through the node agent: no API request.
		before = e.srv.Requests.Load()
		d, err = e.iteration(func(n *cnitest.Netns) (time.Duration, error) {
			d, _, err := e.addVia(n, podNamespace, podName, e.agent.socket)
			if err == nil && verify {
				err = e.verifySeed(n)
			}
			return d, err
		})
		if err != nil {
			return nil, fmt.Errorf("iteration %d: ADD through the agent: %w", i, err)
		}
		if reqs := e.srv.Requests.Load() - before; reqs != 0 {
			return nil, fmt.Errorf("iteration %d: ADD through the agent made %d API request(s)", i, reqs)
		}
		if measured {
			r.agentAdd = append(r.agentAdd, d)
		}

		// (a'') the static-Go floor: exec, stdin, GET, one restore, print.
		d, err = e.iteration(func(n *cnitest.Netns) (time.Duration, error) {
			d, err := e.execFloor(n)
			if err == nil && verify {
				err = e.verifySeed(n)
			}
			return d, err
		})
		if err != nil {
			return nil, fmt.Errorf("iteration %d: static floor: %w", i, err)
		}
		if measured {
			r.staticFloor = append(r.staticFloor, d)
		}

		// (b) the floor: a pod GET and one iptables-restore of the same rules.
		var get, rest time.Duration
		d, err = e.iteration(func(n *cnitest.Netns) (time.Duration, error) {
			var err error
			get, rest, err = e.floor(n)
			if err == nil && verify {
				err = e.verifySeed(n)
			}
			return get + rest, err
		})
		if err != nil {
			return nil, fmt.Errorf("iteration %d: floor: %w", i, err)
		}
		if measured {
			r.floor, r.get, r.restore = append(r.floor, d), append(r.get, get), append(r.restore, rest)
		}

		// (b') the floor's restore again, through pkg/nat as the plug-in does
		// it (own thread, files-only NSS mount namespace): its overhead.
		d, err = e.iteration(func(n *cnitest.Netns) (time.Duration, error) {
			t := &nat.Netns{Path: n.Path(), Backend: nat.Backend(e.o.backend), LockWait: 30 * time.Second}
			start := time.Now()
			err := t.Restore(redirect.IPv4, e.script)
			d := time.Since(start)
			if err == nil && t.IsolationErr != nil {
				err = fmt.Errorf("NSS isolation: %w", t.IsolationErr)
			}
			if err == nil && verify {
				err = e.verifySeed(n)
			}
			return d, err
		})
		if err != nil {
			return nil, fmt.Errorf("iteration %d: restore through pkg/nat: %w", i, err)
		}
		if measured {
			r.natRestore = append(r.natRestore, d)
		}

		// (c) excluded-namespace ADD: no API request at all.
		before = e.srv.Requests.Load()
		d, err = e.iteration(func(n *cnitest.Netns) (time.Duration, error) {
			d, _, err := e.add(n, "kube-system", "coredns-bench")
			if err == nil && verify {
				err = e.verifyUntouched(n)
			}
			return d, err
		})
		if err != nil {
			return nil, fmt.Errorf("iteration %d: excluded ADD: %w", i, err)
		}
		if reqs := e.srv.Requests.Load() - before; reqs != 0 {
			return nil, fmt.Errorf("iteration %d: excluded-namespace ADD made %d API request(s); it must make none", i, reqs)
		}
		if measured {
			r.excl = append(r.excl, d)
		}

		// (d) process-start reference.
		d, err = e.execHello()
		if err != nil {
			return nil, fmt.Errorf("iteration %d: hello: %w", i, err)
		}
		if measured {
			r.hello = append(r.hello, d)
		}
		if verify {
			r.verified++
		}
		if measured && (k+1)%50 == 0 {
			fmt.Printf("  %d/%d  ADD p50 so far %s\n", k+1, e.o.n, ms(r.add.pct(50)))
		}
	}
	if err := e.measureInFlight(r); err != nil {
		return nil, err
	}
	r.elapsed = time.Since(r.started)
	r.loadAfter = loadavg()
	return r, nil
}

// iteration runs one timed step in a namespace of its own, created before
// and deleted after (neither is timed).
func (e *env) iteration(step func(*cnitest.Netns) (time.Duration, error)) (time.Duration, error) {
	n, err := e.nets.create()
	if err != nil {
		return 0, err
	}
	defer e.nets.delete(n)
	return step(n)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
