package helm

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// renderObjects renders the chart and parses it.
func (tl tools) renderObjects(t *testing.T, args ...string) map[string]object {
	t.Helper()
	objs, err := parseObjects(tl.template(t, args...))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func daemonSet(t *testing.T, objs map[string]object) object {
	t.Helper()
	ds, ok := objs["apps/v1 DaemonSet "+releaseNS+"/mesh-cni-node"]
	if !ok {
		t.Fatal("no DaemonSet mesh-cni-node rendered")
	}
	return ds
}

// get walks a path of map keys.
func get(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func checksum(t *testing.T, objs map[string]object) string {
	t.Helper()
	s, _ := get(map[string]any(daemonSet(t, objs)), "spec", "template", "metadata", "annotations", "checksum/config").(string)
	if s == "" {
		t.Fatal("the pod template has no checksum/config")
	}
	return s
}

// TestChecksumFollowsConfig: checksum/config is the SHA-256 of the rendered
// ConfigMap, so it changes with any value that lands there (and helm upgrade
// rolls the pods) and stays put for a value that does not.
func TestChecksumFollowsConfig(t *testing.T) {
	tl := findTools(t)
	base := tl.renderObjects(t)
	// helm prints "---" and a "# Source:" line before each template's output
	cm := tl.template(t, "--show-only", "templates/configmap.yaml")
	parts := strings.SplitN(cm, "\n", 3)
	if len(parts) != 3 || parts[0] != "---" || !strings.HasPrefix(parts[1], "# Source: ") {
		t.Fatalf("unexpected helm template output:\n%s", cm)
	}
	sum := sha256.Sum256([]byte(parts[2]))
	if got, want := checksum(t, base), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("checksum/config %s, want the rendered ConfigMap's sha256 %s", got, want)
	}
	for _, set := range []string{"excludeNamespaces={kube-system,team-a}", "failurePolicy=Alert", "redirect.excludeInboundPorts=22", "repairMode=label", "taint.enabled=false"} {
		if checksum(t, tl.renderObjects(t, "--set", set)) == checksum(t, base) {
			t.Errorf("--set %s: checksum/config unchanged, the DaemonSet would not roll", set)
		}
	}
	if checksum(t, tl.renderObjects(t, "--set", "resources.limits.memory=256Mi")) != checksum(t, base) {
		t.Error("a value outside the ConfigMap changed checksum/config")
	}
}

// TestServiceMonitorNeedsCRD: a ServiceMonitor only when asked for and the
// cluster serves its CRD (else it would fail the whole install).
func TestServiceMonitorNeedsCRD(t *testing.T) {
	tl := findTools(t)
	has := func(objs map[string]object) bool {
		_, ok := objs["monitoring.coreos.com/v1 ServiceMonitor "+releaseNS+"/mesh-cni"]
		return ok
	}
	crd := []string{"--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"}
	if has(tl.renderObjects(t, crd...)) {
		t.Error("ServiceMonitor rendered without metrics.serviceMonitor.enabled")
	}
	if has(tl.renderObjects(t, "--set", "metrics.serviceMonitor.enabled=true")) {
		t.Error("ServiceMonitor rendered although the cluster has no CRD")
	}
	objs := tl.renderObjects(t, append(crd, "--set", "metrics.serviceMonitor.enabled=true")...)
	if !has(objs) {
		t.Fatal("no ServiceMonitor with the CRD and enabled")
	}
	svc, ok := objs["v1 Service "+releaseNS+"/mesh-cni-metrics"]
	if !ok {
		t.Fatal("no Service for the ServiceMonitor to select")
	}
	if sel := get(map[string]any(svc), "spec", "selector", "app.kubernetes.io/name"); sel != "mesh-cni-node" {
		t.Errorf("the metrics Service selects %v, not the DaemonSet's pods", sel)
	}
	if has(tl.renderObjects(t, append(crd, "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.enabled=false")...)) {
		t.Error("ServiceMonitor rendered with metrics off")
	}
}

// TestProfilesPaths: each profile's paths land in the DaemonSet's hostPath
// volumes and the plug-in's kubeconfig dir, and the profile's comments name
// each path it sets (the "why" is next to it).
func TestProfilesPaths(t *testing.T) {
	tl := findTools(t)
	for _, p := range profiles(t) {
		file := filepath.Join(profileDir, p+".yaml")
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var vals struct{ CNIConfDir, CNIBinDir string }
		var m map[string]any
		if err := yaml.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		vals.CNIConfDir, _ = m["cniConfDir"].(string)
		vals.CNIBinDir, _ = m["cniBinDir"].(string)
		if vals.CNIConfDir == "" || vals.CNIBinDir == "" {
			t.Errorf("%s: sets no cniConfDir/cniBinDir", p)
			continue
		}
		var comments strings.Builder
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "#") {
				comments.WriteString(l + "\n")
			}
		}
		for _, dir := range []string{vals.CNIConfDir, vals.CNIBinDir} {
			if !strings.Contains(comments.String(), dir) {
				t.Errorf("%s: the comments do not state %s", p, dir)
			}
		}
		ds := map[string]any(daemonSet(t, tl.renderObjects(t, "-f", file)))
		hostPaths := map[string]string{}
		vols, _ := get(ds, "spec", "template", "spec", "volumes").([]any)
		for _, v := range vols {
			name, _ := get(v, "name").(string)
			path, _ := get(v, "hostPath", "path").(string)
			hostPaths[name] = path
		}
		if hostPaths["cni-net-dir"] != vals.CNIConfDir || hostPaths["cni-bin-dir"] != vals.CNIBinDir {
			t.Errorf("%s: hostPaths conf %q bin %q, want %q %q", p, hostPaths["cni-net-dir"], hostPaths["cni-bin-dir"], vals.CNIConfDir, vals.CNIBinDir)
		}
		containers, _ := get(ds, "spec", "template", "spec", "containers").([]any)
		env, _ := get(containers[0], "env").([]any)
		for _, e := range env {
			if get(e, "name") == "HOST_KUBECONFIG_DIR" && get(e, "value") != vals.CNIConfDir {
				t.Errorf("%s: HOST_KUBECONFIG_DIR %v, want %s (the kubeconfig the conflist names)", p, get(e, "value"), vals.CNIConfDir)
			}
		}
	}
}
