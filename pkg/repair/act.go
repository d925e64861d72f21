package repair

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/podcache"
)

// Results of an action (the metric's result label).
const (
	resultSuccess = "success"
	resultFailed  = "failed"
	resultSkipped = "skipped"
)

// outcome is what an action did and the Event that says so.
type outcome struct {
	result, eventType, reason, message string
}

func failed(format string, a ...any) outcome {
	return outcome{resultFailed, corev1.EventTypeWarning, ReasonFailed, fmt.Sprintf(format, a...)}
}

func (c *Controller) act(ctx context.Context, e *podcache.Entry, cfg *config.Config) outcome {
	switch c.cfg.Mode {
	case ModeDelete:
		return c.delete(ctx, e)
	case ModeLabel:
		return c.label(ctx, e)
	case ModeRepair:
		return c.repairInPlace(ctx, e, cfg)
	}
	return outcome{result: resultSkipped, message: "repair mode off: flagged only"}
}

// gone: the pod was deleted or replaced by another of the same name since
// the cache saw it; nothing is left to do about this one.
func gone(err error) bool { return apierrors.IsNotFound(err) || apierrors.IsConflict(err) }

// delete removes exactly this pod instance (UID precondition): its
// controller recreates it through a chain that now has mesh-cni. Jobs with
// restartPolicy Never too: their controller starts a new pod.
func (c *Controller) delete(ctx context.Context, e *podcache.Entry) outcome {
	if last, ok := c.deletedRecently(e); ok {
		return outcome{resultFailed, corev1.EventTypeWarning, ReasonFailed, fmt.Sprintf(
			"not deleted: mesh-cni deleted an unmeshed pod of %s %s ago and its replacement is unmeshed too "+
				"(is the plug-in failing to record its ADDs?); deleting again would loop", e.Status.Controller, last.Round(time.Second))}
	}
	uid := e.UID
	err := c.cfg.Pods.Pods(e.Namespace).Delete(ctx, e.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	switch {
	case gone(err):
		return outcome{result: resultSkipped, message: "pod already deleted or replaced: " + err.Error()}
	case err != nil:
		return failed("mesh-cni could not delete the unmeshed pod (repair mode delete): %v", err)
	}
	c.noteDeleted(e)
	owners := "its controller (" + strings.Join(e.Status.OwnerKinds, ",") + ") recreates it redirected"
	if len(e.Status.OwnerKinds) == 0 {
		owners = "a bare pod: nothing recreates it"
	}
	return outcome{resultSuccess, corev1.EventTypeNormal, ReasonDeleted,
		fmt.Sprintf("mesh-cni deleted the unmeshed pod (UID %s): %s", uid, owners)}
}

// loopWindow: a controller whose pod was deleted as unmeshed within it
// and whose replacement is unmeshed again is not deleted from again (the
// cause is not the chain order: the records are missing), to stop a restart
// loop. The pod stays flagged, and RepairFailed says why.
const loopWindow = 10 * time.Minute

func (c *Controller) deletedRecently(e *podcache.Entry) (time.Duration, bool) {
	if e.Status.Controller == "" {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.deleted[e.Namespace+"/"+e.Status.Controller]
	since := c.cfg.Now().Sub(at)
	return since, ok && since < loopWindow
}

func (c *Controller) noteDeleted(e *podcache.Entry) {
	if e.Status.Controller == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	for k, at := range c.deleted { // forget what is past the window
		if now.Sub(at) >= loopWindow {
			delete(c.deleted, k)
		}
	}
	c.deleted[e.Namespace+"/"+e.Status.Controller] = now
}

// labelPatch is a JSON patch that adds LabelUnmeshed=true to exactly the
// pod instance uid (the test fails on another pod of the same name).
func labelPatch(uid types.UID, hasLabels bool) ([]byte, error) {
	ops := []map[string]any{{"op": "test", "path": "/metadata/uid", "value": string(uid)}}
	if hasLabels {
		ops = append(ops, map[string]any{"op": "add", "path": "/metadata/labels/" + strings.ReplaceAll(LabelUnmeshed, "/", "~1"), "value": "true"})
	} else {
		ops = append(ops, map[string]any{"op": "add", "path": "/metadata/labels", "value": map[string]string{LabelUnmeshed: "true"}})
	}
	return json.Marshal(ops)
}

// label sets LabelUnmeshed=true and nothing else.
func (c *Controller) label(ctx context.Context, e *podcache.Entry) outcome {
	labels := e.Pod.Metadata.Labels
	if labels[LabelUnmeshed] == "true" {
		return outcome{result: resultSkipped, message: "already labelled " + LabelUnmeshed + "=true"}
	}
	patch, err := labelPatch(e.UID, len(labels) > 0)
	if err != nil {
		return failed("label patch: %v", err)
	}
	_, err = c.cfg.Pods.Pods(e.Namespace).Patch(ctx, e.Name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "mesh-cni-repair"})
	switch {
	case apierrors.IsNotFound(err):
		return outcome{result: resultSkipped, message: "pod already deleted: " + err.Error()}
	case err != nil:
		// A failed test (another pod of the same name, labels changed
		// since the cache saw them) is retried on the pod as it is then.
		return failed("mesh-cni could not label the unmeshed pod %s=true (repair mode label): %v", LabelUnmeshed, err)
	}
	return outcome{resultSuccess, corev1.EventTypeNormal, ReasonLabeled,
		fmt.Sprintf("mesh-cni labelled the unmeshed pod %s=true; nothing else was changed", LabelUnmeshed)}
}

// repairInPlace programs the redirect in the running pod's netns.
func (c *Controller) repairInPlace(ctx context.Context, e *podcache.Entry, cfg *config.Config) outcome {
	p := e.Pod
	p.Metadata.Namespace, p.Metadata.Name, p.Metadata.UID = e.Namespace, e.Name, string(e.UID)
	detail, err := c.cfg.InPlace.RepairInPlace(ctx, &p, e.Status.PodIPs, cfg)
	if err != nil {
		return failed("mesh-cni could not program the redirect in the running pod (repair mode repair): %v", err)
	}
	return outcome{resultSuccess, corev1.EventTypeNormal, ReasonRepaired,
		"mesh-cni programmed the traffic redirect in the running pod's network namespace: " + detail}
}
