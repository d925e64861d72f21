package nodeagent

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAPIServerOutage (runs last: it stops the shared API server): while
// the API server is down the agent serves its cache, so a cached pod's ADD
// succeeds under Block although the plug-in could not reach the API; when
// the API server comes back the agent's watch relists and a pod created
// meanwhile is served from the cache again.
func TestAPIServerOutage(t *testing.T) {
	requireAPI(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "agent.sock")
	pluginKC, err := api.WriteKubeconfig(dir, pluginUser)
	if err != nil {
		t.Fatal(err)
	}
	uid := createPod(t, "outage", nodeName, nil)
	a := startAgent(t, dir, sock, "")
	a.waitReady(t)
	before := cachePods(t, a)

	api.StopAPIServer()
	ns := newNetns(t)
	if _, err := (cniCall{verb: "ADD", podName: "outage", uid: uid, kubeconfig: pluginKC, socket: sock, netns: ns}).run(t); err != nil {
		t.Fatalf("ADD of a cached pod with the API server down: %v", err)
	}
	if !redirected(t, ns) {
		t.Fatal("no redirect")
	}

	if err := api.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	// Until the watch is back (the reflector backs off) an ADD would fall
	// back to the GET, which works again; once it relisted, the cache
	// serves pods created after the outage.
	uid2 := createPod(t, "after-outage", nodeName, nil)
	eventually(t, 60*time.Second, "the agent's watch delivers a pod created after the outage", func() (bool, string) {
		n := cachePods(t, a)
		return n == before+1, fmt.Sprint(n)
	})
	gets := podGets(t)
	ns2 := newNetns(t)
	if _, err := (cniCall{verb: "ADD", podName: "after-outage", uid: uid2, kubeconfig: pluginKC, socket: sock, netns: ns2}).run(t); err != nil {
		t.Fatal(err)
	}
	if n := podGets(t) - gets; n != 0 {
		t.Fatalf("after the API server came back the agent did not serve the new pod from its watch: %d GETs", n)
	}
	a.stop(t, syscall.SIGTERM)
}

func cachePods(t *testing.T, a *agentProc) int {
	t.Helper()
	for _, l := range strings.Split(a.metrics(t), "\n") {
		if v, ok := strings.CutPrefix(l, "mesh_cni_agent_cache_pods "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return -1
}
