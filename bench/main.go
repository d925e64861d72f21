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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/meshcni/mesh-cni/pkg/k8s"
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

// tracker remembers every namespace this run created so that any exit
// path deletes them; creation and deletion hold the lock, so an interrupt
// never races a half-registered namespace.
type tracker struct {
	mu      sync.Mutex
	live    map[string]*cnitest.Netns
	created []string
	closed  bool
}

var errClosed = errors.New("interrupted")

func (t *tracker) create() (*cnitest.Netns, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed
	}
	n, err := cnitest.NewNetns(netnsPrefix)
	if err != nil {
		return nil, err
	}
	if t.live == nil {
		t.live = map[string]*cnitest.Netns{}
	}
	t.live[n.Name] = n
	t.created = append(t.created, n.Name)
	return n, nil
}

func (t *tracker) delete(n *cnitest.Netns) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.live[n.Name]; ok {
		n.Delete()
		delete(t.live, n.Name)
	}
}

func (t *tracker) deleteAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for name, n := range t.live {
		n.Delete()
		delete(t.live, name)
	}
}

// leftovers are created namespaces that still exist in /run/netns.
func (t *tracker) leftovers() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var left []string
	for _, name := range t.created {
		if _, err := os.Stat("/run/netns/" + name); err == nil {
			left = append(left, name)
		}
	}
	return left
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

func (e *env) netconf(netnsPath, agentSocket string) []byte {
	conf := map[string]any{
		"cniVersion":      "1.0.0",
		"name":            "mesh-bench",
		"type":            "mesh-cni",
		"kubeconfig":      e.kubeconfig,
		"iptablesBackend": e.o.backend,
		"agentSocket":     agentSocket,          // "": the direct GET path
		"sandboxDir":      e.dir + "/sandboxes", // ADD's record write is measured, in the bench's dir
		"prevResult": map[string]any{
			"cniVersion": "1.0.0",
			"interfaces": []any{map[string]any{"name": "eth0", "mac": "0a:58:c6:12:00:05", "sandbox": netnsPath}},
			"ips":        []any{map[string]any{"address": podIP, "gateway": "198.18.0.1", "interface": 0}},
			"routes":     []any{map[string]any{"dst": "0.0.0.0/0"}},
		},
	}
	b, _ := json.Marshal(conf)
	return b
}

// add execs the plug-in the way a runtime does and times the exec. It also
// returns how long the plug-in says it spent programming the rules (its
// "redirect programmed" log line; 0 when it did not program any).
func (e *env) add(n *cnitest.Netns, namespace, name string) (time.Duration, time.Duration, error) {
	return e.addVia(n, namespace, name, "")
}

// addVia is add with the plug-in asking the agent at socket ("" = none).
func (e *env) addVia(n *cnitest.Netns, namespace, name, socket string) (time.Duration, time.Duration, error) {
	id := "bench" + strings.TrimPrefix(n.Name, netnsPrefix+"-")
	cmd := exec.Command(e.bin)
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND=ADD",
		"CNI_NETNS="+n.Path(),
		"CNI_IFNAME=eth0",
		"CNI_CONTAINERID="+id,
		"CNI_PATH="+e.dir,
		"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE="+namespace+";K8S_POD_NAME="+name+";K8S_POD_INFRA_CONTAINER_ID="+id,
	)
	cmd.Stdin = bytes.NewReader(e.netconf(n.Path(), socket))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("mesh-cni ADD for %s/%s: %w\nstdout: %s\nstderr: %s", namespace, name, err, stdout.String(), stderr.String())
	}
	var res struct {
		CNIVersion string `json:"cniVersion"`
		IPs        []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res.CNIVersion != "1.0.0" || len(res.IPs) != 1 || res.IPs[0].Address != podIP {
		return 0, 0, fmt.Errorf("mesh-cni ADD for %s/%s printed %q, not the prevResult (%v)", namespace, name, stdout.String(), err)
	}
	return d, programmed(stderr.Bytes()), nil
}

// programmed reads the elapsed time of the plug-in's "redirect programmed"
// JSON log line.
func programmed(log []byte) time.Duration {
	for _, line := range bytes.Split(log, []byte("\n")) {
		var l struct {
			Msg     string `json:"msg"`
			Elapsed string `json:"elapsed"`
		}
		if json.Unmarshal(line, &l) == nil && l.Msg == "redirect programmed" {
			if d, err := time.ParseDuration(l.Elapsed); err == nil {
				return d
			}
		}
	}
	return 0
}

// floor is one pod GET through a brand-new pkg/k8s client (what a fresh
// process has) and one iptables-restore --noflush of the same rules, exec'd
// from a thread inside the fresh netns.
func (e *env) floor(n *cnitest.Netns) (get, restore time.Duration, err error) {
	start := time.Now()
	c, err := k8s.NewClient(e.kubeconfig, 5*time.Second)
	if err != nil {
		return 0, 0, err
	}
	pod, err := c.GetPod(context.Background(), podNamespace, podName)
	if err != nil {
		return 0, 0, err
	}
	mid := time.Now()
	err = ns.WithNetNSPath(n.Path(), func(ns.NetNS) error {
		cmd := exec.Command(e.restore, "--noflush", "--wait", "30")
		cmd.Stdin = strings.NewReader(e.script)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w: %s", e.restore, err, strings.TrimSpace(stderr.String()))
		}
		return nil
	})
	end := time.Now()
	if err != nil {
		return 0, 0, err
	}
	if pod.Metadata.Annotations[redirect.AnnoExcludeOutboundIPRanges] == "" {
		return 0, 0, fmt.Errorf("pod GET returned a pod without the seed's annotation")
	}
	return mid.Sub(start), end.Sub(mid), nil
}

func (e *env) execHello() (time.Duration, error) {
	cmd := exec.Command(e.hello)
	var out bytes.Buffer
	cmd.Stdout = &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil || out.String() != "hello\n" {
		return 0, fmt.Errorf("hello: %v %q", err, out.String())
	}
	return d, nil
}

func (e *env) readTable(n *cnitest.Netns) (redirect.Table, error) {
	text, err := n.Output(e.save, "-t", "nat")
	if err != nil {
		return redirect.Table{}, err
	}
	return redirect.ParseSave(text)
}

// verifySeed: the netns holds exactly the seed's rules in the seed's order.
func (e *env) verifySeed(n *cnitest.Netns) error {
	t, err := e.readTable(n)
	if err != nil {
		return err
	}
	if d := redirect.Diff(e.seed, t); len(d) > 0 {
		return fmt.Errorf("netns %s does not hold the seed's rules:\n  %s", n.Name, strings.Join(d, "\n  "))
	}
	return nil
}

// verifyUntouched: an excluded pod's netns has none of our chains.
func (e *env) verifyUntouched(n *cnitest.Netns) error {
	t, err := e.readTable(n)
	if err != nil {
		return err
	}
	for _, c := range redirect.OwnChains {
		if t.Has(c) {
			return fmt.Errorf("excluded pod's netns %s has chain %s", n.Name, c)
		}
	}
	return nil
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
