package helm

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// object is one rendered Kubernetes object, as JSON-compatible values.
type object map[string]any

// clusterScoped are the kinds the API server stores without a namespace: it
// clears metadata.namespace on create (rest.BeforeCreate), so one set there
// (kustomize's namespace transformer sets it on kinds it does not know, such
// as ValidatingAdmissionPolicy) makes no difference to the system.
var clusterScoped = map[string]bool{
	"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true,
	"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true,
	"MutatingAdmissionPolicy": true, "MutatingAdmissionPolicyBinding": true,
	"ValidatingWebhookConfiguration": true, "MutatingWebhookConfiguration": true,
	"PriorityClass": true, "CustomResourceDefinition": true, "SecurityContextConstraints": true,
}

// normalize drops what the API server drops: a cluster-scoped object's namespace.
func normalize(o object) object {
	if kind, _ := o["kind"].(string); clusterScoped[kind] {
		if md, ok := o["metadata"].(map[string]any); ok {
			delete(md, "namespace")
		}
	}
	return o
}

// key names an object the way the API server does.
func (o object) key() string {
	md, _ := o["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	name, _ := md["name"].(string)
	return fmt.Sprintf("%v %v %s/%s", o["apiVersion"], o["kind"], ns, name)
}

// parseObjects splits a multi-document YAML stream into objects by key.
// An empty document (comments only, a template that rendered nothing) is
// skipped; a key seen twice is an error (two objects would fight).
func parseObjects(stream string) (map[string]object, error) {
	objs := map[string]object{}
	for i, doc := range splitDocs(stream) {
		var o object
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			return nil, fmt.Errorf("document %d: %w\n%s", i, err, doc)
		}
		if len(o) == 0 {
			continue
		}
		o = normalize(o)
		k := o.key()
		if _, dup := objs[k]; dup {
			return nil, fmt.Errorf("%s rendered twice", k)
		}
		objs[k] = o
	}
	return objs, nil
}

func splitDocs(stream string) []string {
	var docs []string
	var cur bytes.Buffer
	for _, line := range strings.Split(stream, "\n") {
		if strings.TrimRight(line, " ") == "---" {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line + "\n")
	}
	return append(docs, cur.String())
}

// helmOnly are the metadata Helm adds that the kustomize base cannot have:
// release bookkeeping labels, and the pod template's checksum of the
// rendered ConfigMap (the base's users roll the DaemonSet by hand).
var (
	helmOnlyLabels      = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}
	helmOnlyAnnotations = []string{"checksum/config"}
)

// stripHelmOnly removes exactly those, and nothing else.
func stripHelmOnly(o object) object {
	c := deepCopy(map[string]any(o)).(map[string]any)
	drop := func(m map[string]any, field string, keys []string) {
		sub, _ := m[field].(map[string]any)
		for _, k := range keys {
			delete(sub, k)
		}
		if sub != nil && len(sub) == 0 {
			delete(m, field)
		}
	}
	if md, ok := c["metadata"].(map[string]any); ok {
		drop(md, "labels", helmOnlyLabels)
	}
	if spec, ok := c["spec"].(map[string]any); ok {
		if tpl, ok := spec["template"].(map[string]any); ok {
			if md, ok := tpl["metadata"].(map[string]any); ok {
				drop(md, "annotations", helmOnlyAnnotations)
			}
		}
	}
	return c
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	default:
		return v
	}
}

// diffValues lists the paths where want and got differ ("" when equal).
func diffValues(path string, want, got any) []string {
	if reflect.DeepEqual(want, got) {
		return nil
	}
	wm, wok := want.(map[string]any)
	gm, gok := got.(map[string]any)
	if wok && gok {
		keys := map[string]bool{}
		for k := range wm {
			keys[k] = true
		}
		for k := range gm {
			keys[k] = true
		}
		var sorted []string
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		var out []string
		for _, k := range sorted {
			out = append(out, diffValues(path+"."+k, wm[k], gm[k])...)
		}
		return out
	}
	ws, wok := want.([]any)
	gs, gok := got.([]any)
	if wok && gok {
		if field, ok := listKey(ws, gs); ok {
			return diffKeyed(path, field, ws, gs)
		}
	}
	if wok && gok && len(ws) == len(gs) {
		var out []string
		for i := range ws {
			out = append(out, diffValues(fmt.Sprintf("%s[%d]", path, i), ws[i], gs[i])...)
		}
		return out
	}
	return []string{fmt.Sprintf("%s: kustomize %s, helm %s", path, show(want), show(got))}
}

func show(v any) string {
	if v == nil {
		return "(absent)"
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := strings.TrimSpace(string(b))
	if strings.Contains(s, "\n") {
		return "\n    " + strings.ReplaceAll(s, "\n", "\n    ")
	}
	return s
}

// compareRenders reports every difference between the kustomize objects and
// the chart's, after removing the Helm-only metadata. The kustomize base's
// Namespace object is the one expected absence: Helm creates the release
// namespace itself (--create-namespace) and cannot also own it.
func compareRenders(kustomize, helm map[string]object, namespace string) []string {
	var diffs []string
	nsKey := fmt.Sprintf("v1 Namespace /%s", namespace)
	keys := map[string]bool{}
	for k := range kustomize {
		keys[k] = true
	}
	for k := range helm {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		ko, inK := kustomize[k]
		ho, inH := helm[k]
		switch {
		case k == nsKey && inK && !inH:
			// helm install --create-namespace
		case !inH:
			diffs = append(diffs, k+": in deploy/ but not rendered by the chart")
		case !inK:
			diffs = append(diffs, k+": rendered by the chart but not in deploy/")
		default:
			for _, d := range diffValues("", map[string]any(ko), map[string]any(stripHelmOnly(ho))) {
				diffs = append(diffs, k+": "+d)
			}
		}
	}
	return diffs
}

// listKey finds the field that names every element of both lists (env and
// volumes by name, volumeMounts by mountPath), so a difference is reported
// per element rather than as two whole lists.
func listKey(lists ...[]any) (string, bool) {
	for _, field := range []string{"name", "mountPath"} {
		ok := true
		for _, l := range lists {
			for _, e := range l {
				m, isMap := e.(map[string]any)
				if _, has := m[field].(string); !isMap || !has {
					ok = false
				}
			}
		}
		if ok {
			return field, true
		}
	}
	return "", false
}

func diffKeyed(path, field string, want, got []any) []string {
	index := func(l []any) (map[string]any, []string) {
		m := map[string]any{}
		var order []string
		for _, e := range l {
			k := e.(map[string]any)[field].(string)
			m[k] = e
			order = append(order, k)
		}
		return m, order
	}
	wm, wo := index(want)
	gm, gordered := index(got)
	var out []string
	for _, k := range wo {
		out = append(out, diffValues(fmt.Sprintf("%s[%s=%s]", path, field, k), wm[k], gm[k])...)
	}
	for _, k := range gordered {
		if _, ok := wm[k]; !ok {
			out = append(out, diffValues(fmt.Sprintf("%s[%s=%s]", path, field, k), nil, gm[k])...)
		}
	}
	if len(out) == 0 && !reflect.DeepEqual(wo, gordered) {
		out = append(out, fmt.Sprintf("%s: order: kustomize %v, helm %v", path, wo, gordered))
	}
	return out
}
