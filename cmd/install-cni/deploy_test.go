package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshcni/mesh-cni/pkg/agent"
	"github.com/meshcni/mesh-cni/pkg/installer"
)

const deployDir = "../../deploy"

func load(t *testing.T, name string, into any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// TestDeployManifests checks the kustomize base against the installer's
// interface: names, RBAC, the DaemonSet's security, probes and mounts, and
// that every setting it passes is accepted by the installer's flag parser.
func TestDeployManifests(t *testing.T) {
	var kz struct {
		APIVersion string              `json:"apiVersion"`
		Kind       string              `json:"kind"`
		Namespace  string              `json:"namespace"`
		Resources  []string            `json:"resources"`
		Labels     []map[string]any    `json:"labels"`
		Images     []map[string]string `json:"images"`
	}
	load(t, "kustomization.yaml", &kz)
	if kz.Namespace != "mesh-cni-system" {
		t.Errorf("kustomization namespace %q", kz.Namespace)
	}
	listed := map[string]bool{}
	for _, r := range kz.Resources {
		listed[r] = true
		if _, err := os.Stat(filepath.Join(deployDir, r)); err != nil {
			t.Errorf("kustomization lists missing %s", r)
		}
	}
	yamls, _ := filepath.Glob(filepath.Join(deployDir, "*.yaml"))
	for _, y := range yamls {
		if b := filepath.Base(y); b != "kustomization.yaml" && !listed[b] {
			t.Errorf("%s is not in kustomization.yaml", b)
		}
	}

	var ns corev1.Namespace
	load(t, "namespace.yaml", &ns)
	var sa corev1.ServiceAccount
	load(t, "serviceaccount.yaml", &sa)
	var role rbacv1.ClusterRole
	load(t, "clusterrole.yaml", &role)
	var binding rbacv1.ClusterRoleBinding
	load(t, "clusterrolebinding.yaml", &binding)
	var cm corev1.ConfigMap
	load(t, "configmap.yaml", &cm)
	var ds appsv1.DaemonSet
	load(t, "daemonset.yaml", &ds)

	if ns.Name != "mesh-cni-system" || sa.Namespace != ns.Name || ds.Namespace != ns.Name || cm.Namespace != ns.Name {
		t.Error("objects are not all in mesh-cni-system")
	}
	// The DaemonSet, exactly: pods list/watch (agent cache), events
	// create/patch (agent Events), nodes get/patch (the readiness taint,
	// scoped by vap-node-taint.yaml). Nothing more: no pods get, no
	// nodes/status.
	if got := grants(role.Rules); got != "|pods|list,watch| |events|create,patch| |nodes|get,patch|" {
		t.Errorf("ClusterRole %s is not exactly list/watch pods, create/patch events, get/patch nodes: %s", role.Name, got)
	}
	checkNodePolicy(t, "system:serviceaccount:"+ns.Name+":"+sa.Name)
	if binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 || binding.Subjects[0].Name != sa.Name || binding.Subjects[0].Namespace != ns.Name {
		t.Errorf("ClusterRoleBinding does not bind %s to %s: %+v", sa.Name, role.Name, binding)
	}
	checkPluginIdentity(t, ns.Name, sa.Name)

	spec := ds.Spec.Template.Spec
	if ds.Name+"-" != cm.Data["INSTALLER_POD_PREFIX"] {
		t.Errorf("pods are named %s-*, but the plug-in skips %q", ds.Name, cm.Data["INSTALLER_POD_PREFIX"])
	}
	if spec.ServiceAccountName != sa.Name || spec.PriorityClassName != "system-node-critical" {
		t.Errorf("serviceAccount %q priorityClass %q", spec.ServiceAccountName, spec.PriorityClassName)
	}
	tolerateAll := false
	for _, tol := range spec.Tolerations {
		if tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == "" {
			tolerateAll = true
		}
	}
	if !tolerateAll {
		t.Error("DaemonSet does not tolerate every taint")
	}
	if spec.HostNetwork {
		t.Error("hostNetwork breaks maxSurge upgrades (two instances, one port)")
	}
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ru == nil || ru.MaxSurge == nil || ru.MaxSurge.IntValue() != 1 || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("update strategy must surge (new pod takes over before the old exits): %+v", ds.Spec.UpdateStrategy)
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g < 10 {
		t.Error("terminationGracePeriodSeconds too short for cleanup")
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.Image != "mesh-cni/install-cni:dev" {
		t.Errorf("image %q", c.Image)
	}
	sc := c.SecurityContext
	if sc == nil || (sc.Privileged != nil && *sc.Privileged) || sc.RunAsUser == nil || *sc.RunAsUser != 0 ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil ||
		len(sc.Capabilities.Add) != 0 || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("securityContext must be root, unprivileged, all capabilities dropped: %+v", sc)
	}

	// The settings the container gets: ConfigMap, then literal env (wins).
	env := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
	known := map[string]bool{"POD_NAME": true, "POD_NAMESPACE": true, "POD_UID": true, "NODE_NAME": true}
	for _, f := range installer.Flags {
		known[f.Env] = true
	}
	for _, e := range agent.EnvNames() {
		known[e] = true
	}
	for k, v := range cm.Data {
		if !known[k] {
			t.Errorf("ConfigMap key %s is no install-cni variable", k)
		}
		env[k] = v
	}
	for _, e := range c.Env {
		if !known[e.Name] {
			t.Errorf("env %s is no install-cni variable", e.Name)
		}
		if e.ValueFrom != nil {
			env[e.Name] = "from-downward-api"
			if e.Name == "POD_NAMESPACE" {
				env[e.Name] = ns.Name
			}
			continue
		}
		env[e.Name] = e.Value
	}
	cfg, err := installer.ParseFlags(c.Args, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the DaemonSet's settings are refused: %v", err)
	}
	if cfg.InstallerNamespace != ns.Name {
		t.Errorf("plug-in skips namespace %q, installer runs in %q", cfg.InstallerNamespace, ns.Name)
	}

	// Probes hit the health endpoints on the health port.
	port := func(name string) int32 {
		for _, p := range c.Ports {
			if p.Name == name {
				return p.ContainerPort
			}
		}
		return -1
	}
	_, hp, _ := strings.Cut(cfg.HealthAddr, ":")
	_, mp, _ := strings.Cut(cfg.MetricsAddr, ":")
	if strconv.Itoa(int(port("health"))) != hp || strconv.Itoa(int(port("metrics"))) != mp {
		t.Errorf("ports %d/%d do not match HEALTH_ADDR %s / METRICS_ADDR %s", port("health"), port("metrics"), cfg.HealthAddr, cfg.MetricsAddr)
	}
	if ds.Spec.Template.Annotations["prometheus.io/port"] != mp {
		t.Error("prometheus.io/port does not match METRICS_ADDR")
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.String() != "health" {
		t.Errorf("readiness probe: %+v", p)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "health" {
		t.Errorf("liveness probe: %+v", p)
	}

	// Mounts: every directory the installer writes is a hostPath mount of
	// the matching host directory.
	hostOf := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostOf[v.Name] = v.HostPath.Path
		}
	}
	mounted := func(containerDir string) string {
		for _, m := range c.VolumeMounts {
			if rel, err := filepath.Rel(m.MountPath, containerDir); err == nil && !strings.HasPrefix(rel, "..") && hostOf[m.Name] != "" {
				return filepath.Join(hostOf[m.Name], rel)
			}
		}
		return ""
	}
	for dir, host := range map[string]string{cfg.NetDir: "/etc/cni/net.d", cfg.BinDir: "/opt/cni/bin", cfg.KubeconfigDir: cfg.HostKubeconfigDir} {
		if got := mounted(dir); got != host {
			t.Errorf("%s is mounted from host %q, want %q", dir, got, host)
		}
	}
	if cfg.PluginBinary != "/opt/mesh-cni/mesh-cni" {
		t.Errorf("plug-in binary %s", cfg.PluginBinary)
	}
}

// TestDockerfile: multi-stage, static binaries, the iptables tools for the
// in-place repair, and the paths the DaemonSet expects.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{
		"FROM golang:", " AS build", "CGO_ENABLED=0", "./cmd/install-cni", "./cmd/mesh-cni",
		"FROM gcr.io/distroless/static", "/usr/local/bin/install-cni", "/opt/mesh-cni/mesh-cni",
		`ENTRYPOINT ["/usr/local/bin/install-cni"]`,
		"FROM debian:bookworm-slim AS iptables", "apt-get install -y --no-install-recommends iptables iproute2",
		"COPY --from=iptables /out/ /",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if strings.Count(df, "\nFROM ") != 3 {
		t.Error("Dockerfile is not a three-stage build (Go, iptables, final)")
	}
}

// TestKustomizeBuilds renders the base with kubectl when it is installed.
func TestKustomizeBuilds(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	out, err := exec.Command(kubectl, "kustomize", deployDir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	for _, want := range []string{"kind: DaemonSet", "name: mesh-cni-node", "image: mesh-cni/install-cni:dev", "kind: ClusterRoleBinding"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rendered base lacks %q", want)
		}
	}
}

// TestDocsListEveryFlag keeps docs/installer.md's table in step with Flags.
func TestDocsListEveryFlag(t *testing.T) {
	b, err := os.ReadFile("../../docs/installer.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, f := range installer.Flags {
		row := "| `--" + f.Name + "` | `" + f.Env + "` |"
		if !strings.Contains(doc, row) {
			t.Errorf("docs/installer.md has no row %q", row)
		}
		if f.Default != "" && !strings.Contains(doc, row+" `"+f.Default+"` |") {
			t.Errorf("docs/installer.md: default of --%s is not %q", f.Name, f.Default)
		}
	}
}

func grants(rules []rbacv1.PolicyRule) string {
	var g []string
	for _, r := range rules {
		g = append(g, fmt.Sprintf("%s|%s|%s|%s", strings.Join(r.APIGroups, ","), strings.Join(r.Resources, ","),
			strings.Join(r.Verbs, ","), strings.Join(r.ResourceNames, ",")))
	}
	return strings.Join(g, " ")
}

// checkPluginIdentity: the plug-in's own service account may get pods and
// nothing else; the DaemonSet's (dsSA) may mint its token and no other.
func checkPluginIdentity(t *testing.T, ns, dsSA string) {
	t.Helper()
	var sa corev1.ServiceAccount
	load(t, "serviceaccount-plugin.yaml", &sa)
	var role rbacv1.ClusterRole
	load(t, "clusterrole-plugin.yaml", &role)
	var binding rbacv1.ClusterRoleBinding
	load(t, "clusterrolebinding-plugin.yaml", &binding)
	var mint rbacv1.Role
	load(t, "role-plugin-token.yaml", &mint)
	var mintBinding rbacv1.RoleBinding
	load(t, "rolebinding-plugin-token.yaml", &mintBinding)
	var ds appsv1.DaemonSet
	load(t, "daemonset.yaml", &ds)

	if sa.Namespace != ns || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("plug-in service account %s/%s must not have its token mounted anywhere", sa.Namespace, sa.Name)
	}
	if got := grants(role.Rules); got != "|pods|get|" {
		t.Errorf("ClusterRole %s is not exactly get pods: %s", role.Name, got)
	}
	if b := binding; b.RoleRef.Name != role.Name || len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" ||
		b.Subjects[0].Name != sa.Name || b.Subjects[0].Namespace != ns {
		t.Errorf("ClusterRoleBinding %s does not bind %s alone to %s: %+v", b.Name, sa.Name, role.Name, b)
	}
	if got := grants(mint.Rules); mint.Namespace != ns || got != "|serviceaccounts/token|create|"+sa.Name {
		t.Errorf("Role %s/%s is not exactly create serviceaccounts/token for %s: %s", mint.Namespace, mint.Name, sa.Name, got)
	}
	if b := mintBinding; b.Namespace != ns || b.RoleRef.Kind != "Role" || b.RoleRef.Name != mint.Name || len(b.Subjects) != 1 ||
		b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != dsSA || b.Subjects[0].Namespace != ns {
		t.Errorf("RoleBinding %s does not bind %s alone to %s: %+v", b.Name, dsSA, mint.Name, b)
	}
	found := false
	for _, e := range ds.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "PLUGIN_SERVICE_ACCOUNT" {
			found = e.Value == sa.Name
		}
	}
	if !found {
		t.Errorf("the DaemonSet does not set PLUGIN_SERVICE_ACCOUNT=%s", sa.Name)
	}
}

// checkNodePolicy: the policy that scopes the agent's node patch is
// shipped, enforced (Fail, Deny), bound, and matches the DaemonSet's
// identity. What it allows and refuses is proven on a real API server
// (test/nodeagent.TestTaintPolicy).
func checkNodePolicy(t *testing.T, user string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "vap-node-taint.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(b), "\n---\n")
	if len(docs) != 2 {
		t.Fatalf("vap-node-taint.yaml: %d documents, want the policy and its binding", len(docs))
	}
	var vap admissionv1.ValidatingAdmissionPolicy
	var bind admissionv1.ValidatingAdmissionPolicyBinding
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &vap); err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict([]byte(docs[1]), &bind); err != nil {
		t.Fatal(err)
	}
	if vap.Spec.FailurePolicy == nil || *vap.Spec.FailurePolicy != admissionv1.Fail {
		t.Error("node policy: failurePolicy must be Fail")
	}
	if bind.Spec.PolicyName != vap.Name || len(bind.Spec.ValidationActions) != 1 || bind.Spec.ValidationActions[0] != admissionv1.Deny {
		t.Errorf("node policy binding: %+v", bind.Spec)
	}
	if len(vap.Spec.MatchConditions) != 1 || !strings.Contains(vap.Spec.MatchConditions[0].Expression, "'"+user+"'") {
		t.Errorf("node policy does not match the DaemonSet's identity %s: %+v", user, vap.Spec.MatchConditions)
	}
}
