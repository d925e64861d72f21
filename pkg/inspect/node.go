package inspect

import (
	"context"
	"fmt"
	"slices"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/pod"
	"github.com/meshcni/mesh-cni/pkg/sandbox"
)

// PodSource reads a pod as it is now.
type PodSource interface {
	Pod(ctx context.Context, namespace, name string) (*pod.Pod, error)
}

// Node is what inspect reads on a node; its side effects are passed in.
type Node struct {
	Config     *config.Config
	SandboxDir string
	Pods       PodSource
	Tables     func(netns string) Tables
	CheckNetns func(path string) error
}

// One inspects the pod namespace/name on this node: its newest sandbox.
func (n *Node) One(ctx context.Context, namespace, name string) Result {
	entries, err := sandbox.List(n.SandboxDir)
	if err != nil {
		return Result{Namespace: namespace, Name: name, Status: Failed, Reason: fmt.Sprintf("reading the sandbox records: %v", err)}
	}
	rec, ok := sandbox.Find(entries, namespace, name)
	if !ok {
		return Result{Namespace: namespace, Name: name, Status: Unknown,
			Reason: fmt.Sprintf("no sandbox of pod %s/%s is recorded on this node (%s): it runs elsewhere, or started before mesh-cni recorded sandboxes", namespace, name, n.SandboxDir)}
	}
	return n.inspect(ctx, rec)
}

// Line is one row of --all: a pod's result, or a record that could not be read.
type Line struct {
	Result
	Record string `json:"record,omitempty"` // the bad record's path
}

// All inspects every recorded sandbox; bad records are reported as lines.
func (n *Node) All(ctx context.Context) ([]Line, error) {
	entries, err := sandbox.List(n.SandboxDir)
	if err != nil {
		return nil, fmt.Errorf("reading the sandbox records: %w", err)
	}
	var out []Line
	for _, e := range entries {
		if e.Err != nil {
			out = append(out, Line{Record: e.Path, Result: Result{Status: Failed, Reason: "bad record: " + e.Err.Error()}})
			continue
		}
		out = append(out, Line{Result: n.inspect(ctx, e.Record)})
	}
	slices.SortFunc(out, func(a, b Line) int {
		if c := compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name); c != 0 {
			return c
		}
		return compare(a.Record, b.Record)
	})
	return out, nil
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (n *Node) inspect(ctx context.Context, rec sandbox.Record) Result {
	if err := n.CheckNetns(rec.Netns); err != nil {
		return Pod(rec, nil, n.Config, nil, err)
	}
	p, err := n.Pods.Pod(ctx, rec.Namespace, rec.Name)
	if err != nil {
		return Result{Namespace: rec.Namespace, Name: rec.Name, ContainerID: rec.ContainerID, Netns: rec.Netns,
			Status: Failed, Reason: fmt.Sprintf("reading pod %s/%s: %v", rec.Namespace, rec.Name, err)}
	}
	if rec.UID != "" && p.Metadata.UID != "" && rec.UID != p.Metadata.UID {
		return Result{Namespace: rec.Namespace, Name: rec.Name, ContainerID: rec.ContainerID, Netns: rec.Netns,
			Status: NetnsGone, Reason: fmt.Sprintf("the record is of an earlier pod of that name (uid %s, now %s)", rec.UID, p.Metadata.UID)}
	}
	return Pod(rec, p, n.Config, n.Tables(rec.Netns), nil)
}

// Worst is the exit code of --all: UNMESHED, then DRIFT, then a failure
// to inspect; 0 when every pod is as ADD would have it.
func Worst(lines []Line) int {
	code := 0
	for _, want := range []Status{Failed, Drift, Unmeshed} {
		for _, l := range lines {
			if l.Status == want {
				code = want.Exit()
			}
		}
	}
	return code
}
