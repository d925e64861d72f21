// Package nodeinspect runs `mesh-cni inspect` on a pod's node from where
// the operator runs kubectl, without SSH: a short-lived inspector pod on
// that node, with exactly the capabilities reading another netns's tables
// needs, created for one inspect and deleted after it.
package nodeinspect

import (
	"encoding/json"
)

// Capabilities the inspector container gets, and why; everything else is
// dropped. docs/operators.md and deploy/inspector-rbac.yaml repeat them.
var Capabilities = []struct{ Name, Why string }{
	{"SYS_ADMIN", "setns(2) into the pod's network namespace (and unshare(2) for the files-only NSS iptables runs with)"},
	{"NET_ADMIN", "read the pod netns's iptables tables (iptables-save, iptables -L)"},
	{"NET_RAW", "iptables-legacy reads the tables through a raw socket"},
	{"SYS_CHROOT", "chroot into the node's root (mounted read-only at /host) to run the node's own iptables, as ADD does"},
}

// HostRoot is where the node's / is mounted in the inspector.
const HostRoot = "/host"

// BinaryPath is the mesh-cni binary in the image (deploy/Dockerfile).
const BinaryPath = "/opt/mesh-cni/mesh-cni"

// Spec is what the inspector pod runs.
type Spec struct {
	Namespace string // where the inspector pod is created
	Node      string
	Image     string
	// Args are mesh-cni inspect's arguments (NAMESPACE/POD or --all, -o).
	Args []string
}

// Manifest is the inspector pod as JSON for kubectl create -f -.
func Manifest(s Spec) ([]byte, error) {
	var caps []string
	for _, c := range Capabilities {
		caps = append(caps, c.Name)
	}
	f, t := false, true
	root := int64(0)
	pod := map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata": map[string]any{
			"generateName": "mesh-cni-inspect-",
			"namespace":    s.Namespace,
			"labels": map[string]string{
				"app.kubernetes.io/name":    "mesh-cni-inspect",
				"app.kubernetes.io/part-of": "mesh-cni",
			},
		},
		"spec": map[string]any{
			"nodeName":                      s.Node,
			"restartPolicy":                 "Never",
			"automountServiceAccountToken":  false,
			"enableServiceLinks":            false,
			"terminationGracePeriodSeconds": 0,
			// It must run wherever the inspected pod runs.
			"tolerations": []map[string]string{{"operator": "Exists"}},
			"containers": []map[string]any{{
				"name":            "inspect",
				"image":           s.Image,
				"imagePullPolicy": "IfNotPresent",
				"command":         append([]string{BinaryPath, "inspect", "--root", HostRoot}, s.Args...),
				// The node's tools, after the chroot (the image sets no PATH).
				"env": []map[string]string{{"name": "PATH", "value": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
				"securityContext": map[string]any{
					"runAsUser":                &root,
					"privileged":               &f,
					"allowPrivilegeEscalation": &f,
					"readOnlyRootFilesystem":   &t,
					"capabilities":             map[string]any{"drop": []string{"ALL"}, "add": caps},
				},
				// No mount propagation: the node's / need not be a shared
				// mount, and the inspector starts after the pod's netns exists.
				"volumeMounts": []map[string]any{{"name": "host", "mountPath": HostRoot, "readOnly": true}},
				"resources":    map[string]any{"limits": map[string]string{"cpu": "200m", "memory": "64Mi"}},
			}},
			"volumes": []map[string]any{{"name": "host", "hostPath": map[string]string{"path": "/", "type": "Directory"}}},
		},
	}
	return json.MarshalIndent(pod, "", "  ")
}
