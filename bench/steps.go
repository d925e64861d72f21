package main

// The timed steps of one iteration: the plug-in's ADD (direct and through
// the agent), the floor, and the bare exec.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/meshcni/mesh-cni/pkg/k8s"
	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

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
