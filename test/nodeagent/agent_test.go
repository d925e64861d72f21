package nodeagent

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshcni/mesh-cni/pkg/redirect"
)

// TestAgentServesADD: with the agent running, ADDs are programmed from its
// cache and the API server records no pod GET from the plug-in; the agent
// logs the decision, posts the Events and counts the ADDs; a pod deleted
// and recreated under the same name is served as its new incarnation.
func TestAgentServesADD(t *testing.T) {
	requireAPI(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "agent.sock")
	pluginKC, err := api.WriteKubeconfig(dir, pluginUser)
	if err != nil {
		t.Fatal(err)
	}
	uid := createPod(t, "cached", nodeName, nil)
	a := startAgent(t, dir, sock, "")
	a.waitReady(t)
	gets := podGets(t)

	ns := newNetns(t)
	if _, err := (cniCall{verb: "ADD", podName: "cached", uid: uid, kubeconfig: pluginKC, socket: sock, netns: ns}).run(t); err != nil {
		t.Fatal(err)
	}
	if !redirected(t, ns) {
		t.Fatal("ADD succeeded but the netns holds no redirect")
	}
	if n := podGets(t) - gets; n != 0 {
		t.Fatalf("the API server recorded %d pod GET(s) from the plug-in during an ADD the agent served", n)
	}
	eventually(t, 5*time.Second, "decision line", func() (bool, string) {
		d := a.decisions("default/cached")
		return len(d) == 1 && d[0]["decision"] == "redirected" && d[0]["podSource"] == "cache" &&
			d[0]["verb"] == "ADD" && d[0]["containerID"] == "ctr-cached" && d[0]["reason"] != "", a.stdout.String()
	})
	if ev := waitEvent(t, "cached", "Redirected"); ev.Type != "Normal" || ev.InvolvedObject.UID != uid {
		t.Fatalf("Redirected event %+v, want Normal on uid %s", ev, uid)
	}

	t.Run("recreated under the same name", func(t *testing.T) {
		deletePod(t, "cached")
		uid2 := createPod(t, "cached", nodeName, map[string]string{redirect.AnnoExcludeInboundPorts: "22,8022"})
		ns2 := newNetns(t)
		gets := podGets(t)
		if _, err := (cniCall{verb: "ADD", podName: "cached", uid: uid2, kubeconfig: pluginKC, socket: sock, netns: ns2}).run(t); err != nil {
			t.Fatal(err)
		}
		out, _ := ns2.Output("iptables-legacy-save", "-t", "nat")
		out2, _ := ns2.Output("iptables-nft-save", "-t", "nat")
		if !strings.Contains(out+out2, "--dport 8022 -j RETURN") {
			t.Fatalf("the new incarnation's annotation is not programmed:\n%s%s", out, out2)
		}
		if n := podGets(t) - gets; n != 0 {
			t.Fatalf("%d pod GETs", n)
		}
	})

	t.Run("bad annotation: refused, Warning Event naming it", func(t *testing.T) {
		anno := redirect.AnnoExcludeOutboundIPRanges
		buid := createPod(t, "badanno", nodeName, map[string]string{anno: "not-a-cidr"})
		ns3 := newNetns(t)
		_, err := (cniCall{verb: "ADD", podName: "badanno", uid: buid, kubeconfig: pluginKC, socket: sock, netns: ns3}).run(t)
		if err == nil || !strings.Contains(err.Error(), anno) {
			t.Fatalf("bad annotation: %v", err)
		}
		if redirected(t, ns3) {
			t.Fatal("refused pod has rules")
		}
		ev := waitEvent(t, "badanno", "BadAnnotation")
		if ev.Type != "Warning" || !strings.Contains(ev.Message, anno) || ev.InvolvedObject.UID != buid {
			t.Fatalf("event %+v", ev)
		}
	})

	t.Run("DEL and CHECK are logged through the agent", func(t *testing.T) {
		if _, err := (cniCall{verb: "DEL", podName: "cached", uid: uid, kubeconfig: pluginKC, socket: sock, netns: ns}).run(t); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "DEL decision line", func() (bool, string) {
			for _, d := range a.decisions("default/cached") {
				if d["verb"] == "DEL" {
					return true, ""
				}
			}
			return false, a.stdout.String()
		})
	})

	t.Run("API unreachable under Block: one Warning per pod; Alert: bypass Warning", func(t *testing.T) {
		// A pod the agent does not cache (another node) and a plug-in whose
		// API credentials are refused: the GET fails.
		bad := filepath.Join(dir, "refused.kubeconfig")
		kc, _ := os.ReadFile(pluginKC)
		if err := os.WriteFile(bad, []byte(strings.ReplaceAll(string(kc), api.Users[pluginUser].Token, "refused")), 0o600); err != nil {
			t.Fatal(err)
		}
		ouid := createPod(t, "elsewhere", "node-b", nil)
		for i := 0; i < 3; i++ {
			_, err := (cniCall{verb: "ADD", podName: "elsewhere", uid: ouid, kubeconfig: bad, socket: sock, netns: newNetns(t)}).run(t)
			if err == nil {
				t.Fatal("ADD succeeded under Block without the pod")
			}
		}
		ev := waitEvent(t, "elsewhere", "PodLookupFailed")
		time.Sleep(time.Second) // room for duplicates to arrive
		if evs := events(t, "elsewhere", "PodLookupFailed"); len(evs) != 1 || evs[0].Count != 1 || ev.Type != "Warning" {
			t.Fatalf("want one Warning posted once for three refused ADDs, got %+v", evs)
		}
		ns5 := newNetns(t)
		if _, err := (cniCall{verb: "ADD", podName: "elsewhere", uid: ouid, kubeconfig: bad, socket: sock, netns: ns5,
			extra: `,"failurePolicy":"Alert"`}).run(t); err != nil {
			t.Fatalf("Alert: %v", err)
		}
		if redirected(t, ns5) {
			t.Fatal("bypassed pod has rules")
		}
		if ev := waitEvent(t, "elsewhere", "RedirectBypassed"); ev.Type != "Warning" || ev.InvolvedObject.UID != ouid {
			t.Fatalf("bypass event %+v", ev)
		}
	})

	t.Run("metrics count the ADDs", func(t *testing.T) {
		m := a.metrics(t)
		for _, want := range []string{
			`mesh_cni_plugin_verbs_total{cause="qualifies",decision="redirected",verb="ADD"} 2`,
			`mesh_cni_plugin_verbs_total{cause="bad-annotation",decision="refused",verb="ADD"} 1`,
			`mesh_cni_plugin_pod_source_total{source="cache"} 3`,
			`mesh_cni_agent_cache_synced 1`,
			`mesh_cni_plugin_add_duration_seconds_count{decision="redirected"} 2`,
		} {
			if !strings.Contains(m, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if t.Failed() {
			t.Log(m)
		}
	})

	t.Run("agent stopped: fallback GET", func(t *testing.T) {
		a.stop(t, syscall.SIGTERM)
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Fatalf("socket left after a clean stop: %v", err)
		}
		ns4 := newNetns(t)
		gets := podGets(t)
		if _, err := (cniCall{verb: "ADD", podName: "cached", kubeconfig: pluginKC, socket: sock, netns: ns4}).run(t); err != nil {
			t.Fatal(err)
		}
		if !redirected(t, ns4) {
			t.Fatal("no redirect after fallback")
		}
		if n := podGets(t) - gets; n != 1 {
			t.Fatalf("fallback made %d pod GETs, want 1", n)
		}
	})
}

// TestAgentAbsentOrUnusable: a stale socket file, an agent whose cache never
// syncs, and a socket served by a non-root process all end in the GET, and
// the ADD succeeds.
func TestAgentAbsentOrUnusable(t *testing.T) {
	requireAPI(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "agent.sock")
	pluginKC, err := api.WriteKubeconfig(dir, pluginUser)
	if err != nil {
		t.Fatal(err)
	}
	uid := createPod(t, "fallback", nodeName, nil)
	add := func(t *testing.T) {
		t.Helper()
		ns := newNetns(t)
		gets := podGets(t)
		if _, err := (cniCall{verb: "ADD", podName: "fallback", uid: uid, kubeconfig: pluginKC, socket: sock, netns: ns}).run(t); err != nil {
			t.Fatal(err)
		}
		if !redirected(t, ns) {
			t.Fatal("no redirect")
		}
		if n := podGets(t) - gets; n != 1 {
			t.Fatalf("%d pod GETs, want the 1 of the fallback", n)
		}
	}

	t.Run("stale socket of a killed agent", func(t *testing.T) {
		a := startAgent(t, filepath.Join(dir, "a1"), sock, "")
		a.waitReady(t)
		a.stop(t, syscall.SIGKILL)
		if fi, err := os.Lstat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
			t.Fatalf("expected the killed agent's socket file: %v", err)
		}
		add(t)
		b := startAgent(t, filepath.Join(dir, "a2"), sock, "")
		b.waitReady(t) // it replaced the stale file
		ns := newNetns(t)
		gets := podGets(t)
		if _, err := (cniCall{verb: "ADD", podName: "fallback", uid: uid, kubeconfig: pluginKC, socket: sock, netns: ns}).run(t); err != nil {
			t.Fatal(err)
		}
		if n := podGets(t) - gets; n != 0 {
			t.Fatalf("restarted agent did not serve: %d GETs", n)
		}
		b.stop(t, syscall.SIGTERM)
	})

	t.Run("cache not synced", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.kubeconfig")
		kc, _ := os.ReadFile(pluginKC)
		tok := api.Users[pluginUser].Token
		if err := os.WriteFile(bad, []byte(strings.ReplaceAll(string(kc), tok, "not-a-token")), 0o600); err != nil {
			t.Fatal(err)
		}
		a := startAgent(t, filepath.Join(dir, "a3"), sock, bad)
		eventually(t, 10*time.Second, "socket listening", func() (bool, string) {
			_, err := os.Stat(sock)
			return err == nil, ""
		})
		// The installation gets in place; the agent's cache never syncs.
		eventually(t, 20*time.Second, "/readyz: not ready because the cache has not synced", func() (bool, string) {
			code, body := a.readyz()
			return code == 503 && strings.Contains(body, "not synced"), body
		})
		add(t)
		a.stop(t, syscall.SIGTERM)
	})
}
