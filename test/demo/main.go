// Command demo does, on one machine and without a cluster, what the seed
// document's "Verify the iptables rules" section does by hand: it runs the
// real CNI chain (Debian's bridge + host-local, then mesh-cni) for the
// Bookinfo productpage pod, prints the pod's nat table the way
// `nsenter ... iptables -t nat -L -n -v --line-numbers -x` shows it, proves
// that one connection is redirected to the sidecar, runs CHECK and DEL, and
// removes everything it created.
//
//	sudo go run ./test/demo      (make demo)
package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

const (
	podNamespace = "default"
	podName      = "productpage-v1-d5789fdfb-demo1"
	proxyPorts   = "15001,15006"
	appUID       = 1000 // the productpage container's runAsUser in the seed
	proxyUID     = 1337 // istio-proxy's
	appPort      = "9080"
)

func main() {
	if why := cnitest.RequireRoot(); why != "" {
		fmt.Fprintln(os.Stderr, "demo:", why, "(try: sudo make demo)")
		os.Exit(1)
	}
	d := &demo{}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "\ndemo: %v: cleaning up\n", s)
		d.cleanup()
		os.Exit(130)
	}()
	err := d.run()
	d.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "\nDEMO FAILED:", err)
		os.Exit(1)
	}
	if left := d.leftovers(); len(left) > 0 {
		fmt.Fprintln(os.Stderr, "\nDEMO FAILED: left behind:", strings.Join(left, ", "))
		os.Exit(1)
	}
	fmt.Println("\nDone: checked that no namespace, process or file of the demo is left.")
}

// leftovers lists what cleanup should have removed and did not.
func (d *demo) leftovers() []string {
	var left []string
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	if d.dir != "" && exists(d.dir) {
		left = append(left, d.dir)
	}
	if d.chain != nil && exists(d.chain.Node.Path()) {
		left = append(left, d.chain.Node.Path())
	}
	if d.pod.Netns != nil && exists(d.pod.Netns.Path()) {
		left = append(left, d.pod.Netns.Path())
	}
	if d.proxy != nil && d.proxy.ProcessState == nil {
		left = append(left, fmt.Sprintf("stand-in proxy pid %d", d.proxy.Process.Pid))
	}
	return left
}

type demo struct {
	mu      sync.Mutex
	undo    []func() // run last-in first-out
	once    sync.Once
	dir     string
	chain   *cnitest.Chain
	srv     *cnitest.PodServer
	pod     cnitest.Pod
	mesh    string // mesh-cni binary
	standin string
	step    int
	result  *current.Result
	proxy   *exec.Cmd
}

func (d *demo) defer_(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.undo = append(d.undo, fn)
}

func (d *demo) cleanup() {
	d.once.Do(func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		fmt.Println()
		heading("Cleaning up")
		for i := len(d.undo) - 1; i >= 0; i-- {
			d.undo[i]()
		}
	})
}

func heading(s string) {
	fmt.Printf("\n%s\n%s\n", s, strings.Repeat("=", len(s)))
}

func (d *demo) section(title string) {
	d.step++
	heading(fmt.Sprintf("%d. %s", d.step, title))
}

func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

func (d *demo) run() error {
	say("mesh-cni demo")
	say("=============")
	say("This does what the seed's \"Verify the iptables rules\" section does by hand on a")
	say("cluster node, here on this machine alone: it sets up the network of the Bookinfo")
	say("productpage pod through the real CNI chain, shows the nat rules mesh-cni programmed")
	say("in the pod's network namespace, and sends one connection through them.")

	d.section("Build the binaries")
	var err error
	if d.dir, err = os.MkdirTemp("", "mesh-cni-demo-"); err != nil {
		return err
	}
	// The stand-in processes run as UIDs 1337 and 1000 and must reach the binary.
	if err := os.Chmod(d.dir, 0o755); err != nil {
		return err
	}
	d.defer_(func() {
		_ = os.RemoveAll(d.dir)
		say("removed %s", d.dir)
	})
	for _, tool := range []string{"ip", "nsenter", "iptables-nft", "iptables-legacy", filepath.Join(cnitest.DebianPluginDir, "bridge"), filepath.Join(cnitest.DebianPluginDir, "host-local")} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is missing: install iptables, iproute2, util-linux and containernetworking-plugins", tool)
		}
	}
	if d.mesh, err = cnitest.BuildBinary(d.dir, "./cmd/mesh-cni", "mesh-cni"); err != nil {
		return err
	}
	if d.standin, err = cnitest.BuildBinary(d.dir, "./test/standin", "standin"); err != nil {
		return err
	}
	say("%s  the plug-in (%s)", d.mesh, size(d.mesh))
	say("%s   a stand-in for the sidecar: it reports the original destination of every", d.standin)
	say("%s   connection it accepts (SO_ORIGINAL_DST)", strings.Repeat(" ", len(d.standin)))

	if err := d.startChain(); err != nil {
		return err
	}
	if err := d.add(); err != nil {
		return err
	}
	if err := d.showRules(); err != nil {
		return err
	}
	if err := d.connect(); err != nil {
		return err
	}
	return d.checkDel()
}

// startChain creates the node namespace and the conflist, and the pod server
// inside the node namespace: the plug-in runs there (as it would on a node)
// and must find the API at the kubeconfig's 127.0.0.1 address.
func (d *demo) startChain() error {
	d.section("The pod, from a stand-in API server")
	kubeconfig := filepath.Join(d.dir, cnitest.KubeconfigName) // where PodServer.WriteKubeconfig writes
	chain, err := cnitest.NewChain(d.dir, cnitest.ChainOptions{
		MeshBinDir: d.dir,
		MeshConf:   map[string]any{"kubeconfig": kubeconfig},
	})
	if err != nil {
		return err
	}
	d.chain = chain
	d.defer_(func() {
		chain.Close()
		say("deleted the node namespace %s (and with it the bridge mcni0)", chain.Node.Name)
	})
	pod := cnitest.SeedPod(podNamespace, podName, redirecttest.SeedAnnotations)
	if d.srv, err = cnitest.NewPodServerIn(chain.Node.Path(), pod); err != nil {
		return err
	}
	d.defer_(func() {
		d.srv.Close()
		say("stopped the pod server")
	})
	if _, err := d.srv.WriteKubeconfig(d.dir); err != nil {
		return err
	}
	say("There is no cluster here yet. Until the local-cluster issue lands, the pod comes")
	say("from a small read-only pod server started by this demo, standing in for the")
	say("Kubernetes API server: it answers GET /api/v1/namespaces/NS/pods/NAME and nothing")
	say("else. It listens on %s inside the \"node\" network namespace", d.srv.URL)
	say("%s, where the plug-in runs; the plug-in reads it through client-go", chain.Node.Name)
	say("with the kubeconfig %s.", kubeconfig)
	say("")
	say("The pod is the seed's productpage pod as the sidecar injector leaves it in CNI mode:")
	say("  %s/%s", podNamespace, podName)
	for _, c := range pod.Spec.Containers {
		uid := "?"
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			uid = fmt.Sprint(*c.SecurityContext.RunAsUser)
		}
		say("  container %-12s runAsUser %s", c.Name, uid)
	}
	for k, v := range pod.Annotations {
		say("  annotation %s: %s", k, v)
	}
	say("  no istio-init container: mesh-cni programs the rules instead")
	return nil
}

func (d *demo) add() error {
	d.section("Run the CNI chain: ADD")
	b, err := os.ReadFile(filepath.Join(d.dir, "10-mesh-test.conflist"))
	if err != nil {
		return err
	}
	say("The runtime (containerd, CRI-O) finds this conflist; mesh-cni is chained last,")
	say("after the node's primary network plug-in (here Debian's bridge + host-local):")
	say("")
	say("%s", indent(string(b)))
	pn, err := cnitest.NewNetns("mcdemo-pod")
	if err != nil {
		return err
	}
	d.defer_(func() {
		pn.Delete()
		say("deleted the pod namespace %s", pn.Name)
	})
	d.pod = cnitest.Pod{Netns: pn, Namespace: podNamespace, Name: podName, ContainerID: randomID()}
	say("")
	say("Pod network namespace: %s", pn.Path())
	say("Running ADD through libcni, the way containerd calls the chain (mesh-cni's own")
	say("structured log goes to stderr, the lines starting with '{'):")
	say("")
	res, err := d.chain.Add(d.pod)
	if err != nil {
		return fmt.Errorf("chain ADD: %w", err)
	}
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return err
	}
	if len(r.IPs) == 0 {
		return errors.New("chain ADD returned no IP")
	}
	say("")
	say("ADD succeeded. The result the runtime gets (mesh-cni passes the bridge's through):")
	for _, ip := range r.IPs {
		say("  pod IP %s, gateway %s", ip.Address.String(), ip.Gateway)
	}
	say("mesh-cni made %d request(s) to the pod server.", d.srv.Requests.Load())
	d.result = r
	return nil
}

// backend tells which iptables flavour holds the pod's rules: the one
// mesh-cni chose for iptablesBackend "auto".
func (d *demo) backend() (string, error) {
	for _, b := range []string{"nft", "legacy"} {
		out, err := d.pod.Netns.Output("iptables-"+b+"-save", "-t", "nat")
		if err == nil && strings.Contains(out, ":"+redirect.ChainOutput) {
			return b, nil
		}
	}
	return "", errors.New("neither iptables-nft nor iptables-legacy shows the ISTIO chains in the pod's netns")
}

func (d *demo) showRules() error {
	d.section("The pod's nat table")
	b, err := d.backend()
	if err != nil {
		return err
	}
	tool := "iptables-" + b
	// The seed types plain "iptables"; use it when it is this backend here.
	if real, err := filepath.EvalSymlinks(mustLook("iptables")); err == nil && strings.Contains(filepath.Base(real), b) {
		tool = "iptables"
	}
	say("This is what the seed's \"Verify the iptables rules\" section shows: there the pod's")
	say("netns is entered with nsenter -t <pid> -n; here it has a name, so --net=<path>.")
	say("mesh-cni's iptablesBackend \"auto\" chose %s here (the node's legacy tables hold", b)
	say("no rules); `%s` is the matching command.", tool)
	say("")
	args := []string{"--net=" + d.pod.Netns.Path(), tool, "-t", "nat", "-L", "-n", "-v", "--line-numbers", "-x"}
	say("$ nsenter %s", strings.Join(args, " "))
	out, err := exec.Command("nsenter", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nsenter %s: %w: %s", strings.Join(args, " "), err, out)
	}
	say("%s", indent(string(out)))
	if numericProto.MatchString(string(out)) {
		say("(This iptables prints the protocol as a number under -n, as Debian 12's 1.8.9 does:")
		say("6 is tcp and 0 is all, the names the seed's output shows.)")
	}
	say("")
	seed, err := redirecttest.SeedRuleset()
	if err != nil {
		return err
	}
	save, err := d.pod.Netns.Output("iptables-"+b+"-save", "-t", "nat")
	if err != nil {
		return err
	}
	t, err := redirect.ParseSave(save)
	if err != nil {
		return err
	}
	if diff := redirect.Diff(seed, t); len(diff) > 0 {
		return fmt.Errorf("the pod's rules differ from the seed's:\n  %s", strings.Join(diff, "\n  "))
	}
	say("Checked: chains ISTIO_INBOUND, ISTIO_REDIRECT, ISTIO_IN_REDIRECT and ISTIO_OUTPUT hold")
	say("the seed's %d rules in the seed's order (pkg/redirect/testdata/seed-nat-rules.txt).", len(seed.Rules))
	return nil
}

func (d *demo) connect() error {
	d.section("One redirected connection")
	proxy := d.pod.Netns.Command(proxyUID, proxyUID, d.standin, "proxy", "--ports", proxyPorts)
	stdout, err := proxy.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	proxy.Stderr = &stderr
	if err := proxy.Start(); err != nil {
		return err
	}
	d.proxy = proxy
	done := make(chan struct{})
	go func() { _ = proxy.Wait(); close(done) }()
	d.defer_(func() {
		_ = proxy.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			_ = proxy.Process.Kill()
			<-done
		}
		say("stopped the stand-in proxy (pid %d)", proxy.Process.Pid)
	})
	lines := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- strings.TrimSpace(l)
	}()
	say("In the pod's netns, the stand-in sidecar runs as UID/GID %d, the proxy's identity:", proxyUID)
	say("$ nsenter --net=%s --setuid=%d --setgid=%d -- standin proxy --ports %s", d.pod.Netns.Path(), proxyUID, proxyUID, proxyPorts)
	select {
	case l := <-lines:
		if !strings.Contains(l, "listening") {
			return fmt.Errorf("stand-in proxy did not start: %q %s", l, stderr.String())
		}
		say("    %s", l)
	case <-done:
		return fmt.Errorf("stand-in proxy exited: %s", stderr.String())
	case <-time.After(10 * time.Second):
		return errors.New("stand-in proxy did not report listening within 10s")
	}

	gw := d.result.IPs[0].Gateway.String()
	podIP := d.result.IPs[0].Address.IP.String()
	target := gw + ":" + appPort
	say("")
	say("Outbound: the app (UID %d) connects from the pod to %s, the bridge's address on", appUID, target)
	say("the node, where nothing listens on port %s. The OUTPUT rules send it to 15001:", appPort)
	say("$ nsenter --net=%s --setuid=%d --setgid=%d -- standin dial %s", d.pod.Netns.Path(), appUID, appUID, target)
	out, err := d.pod.Netns.Command(appUID, appUID, d.standin, "dial", target).CombinedOutput()
	if err != nil {
		return fmt.Errorf("standin dial %s from the pod: %w: %s", target, err, out)
	}
	say("    %s", strings.TrimSpace(string(out)))
	if err := expect(string(out), "port=15001", "orig="+target); err != nil {
		return fmt.Errorf("outbound connection: %w", err)
	}
	say("The sidecar's outbound listener (port=15001) accepted it and still sees where the")
	say("app meant to go (orig=%s): that is what Envoy routes on.", target)

	inbound := podIP + ":" + appPort
	say("")
	say("Inbound: from the node, a client connects to the pod's app port %s. The", inbound)
	say("PREROUTING rules send it to the sidecar's inbound listener, 15006:")
	say("$ nsenter --net=%s -- standin dial %s", d.chain.Node.Path(), inbound)
	out, err = d.chain.Node.Command(0, 0, d.standin, "dial", inbound).CombinedOutput()
	if err != nil {
		return fmt.Errorf("standin dial %s from the node: %w: %s", inbound, err, out)
	}
	say("    %s", strings.TrimSpace(string(out)))
	if err := expect(string(out), "port=15006", "orig="+inbound); err != nil {
		return fmt.Errorf("inbound connection: %w", err)
	}
	return nil
}

// numericProto matches a rule line whose prot column is a number.
var numericProto = regexp.MustCompile(`(?m)^\d+\s+\d+\s+\d+\s+\S+\s+\d+\s+--`)

func expect(out string, want ...string) error {
	for _, w := range want {
		if !strings.Contains(out, w) {
			return fmt.Errorf("the stand-in proxy answered %q; want %s", strings.TrimSpace(out), strings.Join(want, " "))
		}
	}
	return nil
}

func (d *demo) checkDel() error {
	d.section("CHECK and DEL")
	say("CHECK: mesh-cni reads the pod's nat table back and compares it with the rules it")
	say("would program now (a difference fails CHECK with the diff).")
	if err := d.chain.Check(d.pod); err != nil {
		return fmt.Errorf("chain CHECK: %w", err)
	}
	say("CHECK passed.")
	say("")
	say("DEL: the runtime tears the pod's network down; mesh-cni removes its chains and the")
	say("bridge plug-in its veth and IP.")
	if err := d.chain.Del(d.pod); err != nil {
		return fmt.Errorf("chain DEL: %w", err)
	}
	b, err := d.backend()
	if err == nil {
		return fmt.Errorf("after DEL the pod's netns still has the mesh chains (iptables-%s)", b)
	}
	say("DEL passed; the pod's nat table no longer has any ISTIO chain.")
	return nil
}

func mustLook(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return name
	}
	return p
}

func size(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f MB", float64(st.Size())/(1<<20))
}

func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
