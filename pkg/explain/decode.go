// Package explain answers, offline, what mesh-cni's ADD would do to each pod
// a manifest describes: every eligibility condition, the verdict, the
// resolved settings with their source and the iptables-restore text per
// family. It runs the plug-in's own decision (podcheck) and rule builder
// (redirect), so explain and ADD cannot disagree. It is pure: documents and
// a config in, reports out; no API, no kernel.
package explain

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/meshcni/mesh-cni/pkg/pod"
)

// Source is one pod a manifest describes, or a document that describes
// none (Skipped) or could not be read (Err).
type Source struct {
	// Document is the 1-based document number in the input.
	Document  int
	Kind      string
	Namespace string
	Name      string
	Pod       *pod.Pod
	Skipped   string
	Err       error
}

// object is any Kubernetes object: a pod, a workload with a pod template,
// a List, or something else.
type object struct {
	Kind     string            `json:"kind"`
	Metadata pod.Metadata      `json:"metadata"`
	Spec     json.RawMessage   `json:"spec"`
	Items    []json.RawMessage `json:"items"`
}

// template is a pod template: where workloads keep their pod.
type template struct {
	Metadata pod.Metadata `json:"metadata"`
	Spec     pod.Spec     `json:"spec"`
}

// Decode splits YAML or JSON input into documents and each into the pods
// it describes. A pod without a namespace is in defaultNamespace. A
// document that cannot be read is a Source with Err; the others are still
// decoded.
func Decode(input []byte, defaultNamespace string) []Source {
	var out []Source
	for i, doc := range splitDocuments(input) {
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			out = append(out, Source{Document: i + 1, Err: fmt.Errorf("document %d: %w", i+1, err)})
			continue
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
			continue // a document of comments only
		}
		out = append(out, fromJSON(j, i+1, defaultNamespace)...)
	}
	return out
}

// splitDocuments cuts YAML at its "---" separators; JSON is one document.
func splitDocuments(input []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(input))
	sc.Buffer(make([]byte, 64*1024), len(input)+1)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "---") && strings.TrimSpace(strings.TrimPrefix(line, "---")) == "" {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	return append(docs, cur.Bytes())
}

func fromJSON(j []byte, n int, defNS string) []Source {
	var o object
	if err := json.Unmarshal(j, &o); err != nil {
		return []Source{{Document: n, Err: fmt.Errorf("document %d: not a Kubernetes object: %w", n, err)}}
	}
	src := Source{Document: n, Kind: o.Kind, Namespace: o.Metadata.Namespace, Name: o.Metadata.Name}
	if src.Namespace == "" {
		src.Namespace = defNS
	}
	if o.Kind == "List" || strings.HasSuffix(o.Kind, "List") && o.Items != nil {
		var out []Source
		for _, item := range o.Items {
			out = append(out, fromJSON(item, n, defNS)...)
		}
		return out
	}
	tmplPath, ok := templatePaths[o.Kind]
	if !ok {
		src.Skipped = fmt.Sprintf("a %s holds no pod", kindOrUnknown(o.Kind))
		return []Source{src}
	}
	p, err := podOf(o, tmplPath)
	if err != nil {
		src.Err = fmt.Errorf("document %d (%s %s): %w", n, o.Kind, o.Metadata.Name, err)
		return []Source{src}
	}
	p.Metadata.Namespace, p.Metadata.Name = src.Namespace, src.Name
	src.Pod = p
	return []Source{src}
}

func kindOrUnknown(k string) string {
	if k == "" {
		return "document without a kind"
	}
	return k
}

// templatePaths is where each kind keeps its pod: the path of keys under
// spec to the pod template; nil for a Pod, whose spec is the pod's.
var templatePaths = map[string][]string{
	"Pod":                   nil,
	"Deployment":            {"template"},
	"StatefulSet":           {"template"},
	"DaemonSet":             {"template"},
	"ReplicaSet":            {"template"},
	"ReplicationController": {"template"},
	"Job":                   {"template"},
	"CronJob":               {"jobTemplate", "spec", "template"},
}

// podOf reads the pod of an object: its own spec, or its template's, the
// template's labels and annotations being the pod's.
func podOf(o object, path []string) (*pod.Pod, error) {
	p := &pod.Pod{Kind: "Pod", Metadata: o.Metadata}
	if path == nil {
		if len(o.Spec) == 0 {
			return nil, fmt.Errorf("spec: missing")
		}
		if err := json.Unmarshal(o.Spec, &p.Spec); err != nil {
			return nil, fmt.Errorf("spec: %w", err)
		}
		return p, nil
	}
	raw := o.Spec
	where := "spec"
	for _, key := range path {
		var m map[string]json.RawMessage
		if len(raw) == 0 || json.Unmarshal(raw, &m) != nil || m[key] == nil {
			return nil, fmt.Errorf("%s.%s: missing", where, key)
		}
		raw, where = m[key], where+"."+key
	}
	var t template
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	p.Spec = t.Spec
	p.Metadata.Labels, p.Metadata.Annotations = t.Metadata.Labels, t.Metadata.Annotations
	return p, nil
}
