package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/meshcni/mesh-cni/pkg/agent"
	"github.com/meshcni/mesh-cni/pkg/redirect/redirecttest"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

// The agent path and the static-Go floor (issue 7's "Speed").

// staticPods lists the bench pod once and then watches nothing: the
// agent's cache holds it as it would after its watch delivered it.
type staticPods struct{ pod *corev1.Pod }

func (s staticPods) List(metav1.ListOptions) (runtime.Object, error) {
	return &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: []corev1.Pod{*s.pod}}, nil
}
func (s staticPods) Watch(metav1.ListOptions) (watch.Interface, error) { return watch.NewFake(), nil }

// IsWatchListSemanticsUnSupported: a plain list, then a watch.
func (s staticPods) IsWatchListSemanticsUnSupported() bool { return true }

// agentBench is the in-process node agent the agent path talks to.
type agentBench struct {
	socket string
	stop   context.CancelFunc
	done   chan struct{}
}

func (e *env) startAgent() error {
	p := cnitest.SeedPod(podNamespace, podName, redirecttest.SeedAnnotations) // what the pod server serves
	p.ResourceVersion, p.UID, p.Spec.NodeName = "1", "bench-uid", "bench-node"
	sock := filepath.Join(e.dir, "run", "agent.sock")
	a, err := agent.NewFromParts(agent.Config{
		Socket: sock, NodeName: "bench-node", PodWait: 300 * time.Millisecond,
		Out: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, staticPods{p}, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.agent = &agentBench{socket: sock, stop: cancel, done: make(chan struct{})}
	go func() { _ = a.Run(ctx); close(e.agent.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for a.Ready() != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("agent not ready: %v", a.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func (e *env) stopAgent() {
	if e.agent != nil {
		e.agent.stop()
		<-e.agent.done
		e.agent = nil
	}
}

// floorConf is the static floor's stdin: the prevResult and what it needs
// to do the GET and the restore.
func (e *env) floorConf(netnsPath string) []byte {
	var conf map[string]any
	_ = json.Unmarshal(e.netconf(netnsPath, ""), &conf)
	conf["floor"] = map[string]any{"url": e.srv.URL, "restore": e.restore, "script": e.script}
	b, _ := json.Marshal(conf)
	return b
}

// execFloor times one exec of the static floor in the netns.
func (e *env) execFloor(n *cnitest.Netns) (time.Duration, error) {
	cmd := exec.Command(e.floorBin)
	cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_NETNS=" + n.Path(), "CNI_IFNAME=eth0", "CNI_CONTAINERID=floor",
		"CNI_ARGS=K8S_POD_NAMESPACE=" + podNamespace + ";K8S_POD_NAME=" + podName, "PATH=" + os.Getenv("PATH")}
	cmd.Stdin = bytes.NewReader(e.floorConf(n.Path()))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil || !bytes.Contains(stdout.Bytes(), []byte(podIP)) {
		return 0, fmt.Errorf("static floor: %v: %s %s", err, stdout.String(), stderr.String())
	}
	return d, nil
}

// inFlight runs c ADDs at once (agent path or direct GET) in c fresh
// namespaces and returns each one's duration.
func (e *env) inFlight(c int, socket string) (series, error) {
	nets := make([]*cnitest.Netns, 0, c)
	defer func() {
		for _, n := range nets {
			e.nets.delete(n)
		}
	}()
	for i := 0; i < c; i++ {
		n, err := e.nets.create()
		if err != nil {
			return nil, err
		}
		nets = append(nets, n)
	}
	out := make(series, c)
	errs := make([]error, c)
	var wg sync.WaitGroup
	for i, n := range nets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], _, errs[i] = e.addVia(n, podNamespace, podName, socket)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// flightResult is one concurrency level's per-ADD durations, both paths.
type flightResult struct {
	c             int
	agent, direct series
}

// measureInFlight: 10 and 110 ADDs at once (110: the kubelet's default
// max pods), through the agent and with the direct GET, a few rounds each.
func (e *env) measureInFlight(r *results) error {
	for _, c := range []int{10, 110} {
		fr := flightResult{c: c}
		rounds := 3
		if c > 10 {
			rounds = 1
		}
		fmt.Printf("  %d ADDs in flight, %d round(s) per path ...\n", c, rounds)
		for k := 0; k < rounds; k++ {
			s, err := e.inFlight(c, e.agent.socket)
			if err != nil {
				return fmt.Errorf("%d in flight through the agent: %w", c, err)
			}
			fr.agent = append(fr.agent, s...)
			if s, err = e.inFlight(c, ""); err != nil {
				return fmt.Errorf("%d in flight, direct GET: %w", c, err)
			}
			fr.direct = append(fr.direct, s...)
		}
		r.flight = append(r.flight, fr)
	}
	return nil
}
