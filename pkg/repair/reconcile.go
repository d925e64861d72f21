package repair

import (
	"context"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/podcache"
	"github.com/meshcni/mesh-cni/pkg/unmeshed"
)

// active is the plug-in config when the controller may act: the cache has
// synced and the installer says our entry is in the chain.
func (c *Controller) active() (*config.Config, bool) {
	if !c.cfg.Cache.Synced() {
		return nil, false
	}
	path, installed := c.cfg.State()
	if !installed {
		return nil, false
	}
	cfg, err := c.pluginConfig(path)
	if err != nil {
		c.mu.Lock()
		repeat := c.lastCfgErr == err.Error()
		c.lastCfgErr = err.Error()
		c.mu.Unlock()
		if !repeat { // once per distinct error, not once per pod
			c.log.Warn("cannot read the installed plug-in config; no pod is judged until it can be", "conflist", path, "error", err)
		}
		return nil, false
	}
	c.mu.Lock()
	first := c.activeSince.IsZero()
	if first {
		c.activeSince = c.cfg.Now()
	}
	c.mu.Unlock()
	if first {
		c.log.Info("repair controller active: plug-in installed and pod cache synced", "conflist", path, "sandboxDir", cfg.SandboxDir)
		if cfg.SandboxDir == "" {
			c.log.Warn("the installed plug-in keeps no ADD records (sandboxDir empty): unmeshed pods cannot be found", "conflist", path)
		}
	}
	c.recs.watch(cfg.SandboxDir)
	return cfg, true
}

// pluginConfig is config.Load of path, read again only when the file
// changed (the installer rewrites it; every queue item needs it).
func (c *Controller) pluginConfig(path string) (*config.Config, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("%s@%d/%d", path, st.ModTime().UnixNano(), st.Size())
	c.mu.Lock()
	cached, cachedID := c.plugCfg, c.plugCfgPath
	c.mu.Unlock()
	if cached != nil && cachedID == id {
		return cached, nil
	}
	cfg, err := c.cfg.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.plugCfg, c.plugCfgPath = cfg, id
	c.mu.Unlock()
	return cfg, nil
}

// reconcile judges one pod and acts on it.
func (c *Controller) reconcile(ctx context.Context, key string, cfg *config.Config) {
	ns, name, _ := strings.Cut(key, "/")
	e, ok := c.cfg.Cache.Peek(ns, name)
	if !ok {
		c.clear(key)
		c.mu.Lock()
		delete(c.verified, key)
		c.mu.Unlock()
		return
	}
	v := unmeshed.Decide(e, cfg, c.recs.snapshot(cfg.SandboxDir))
	if v.Unmeshed {
		// The snapshot may lag the record an ADD just wrote: judge on a
		// fresh read before flagging anything.
		v = unmeshed.Decide(e, cfg, c.recs.fresh(cfg.SandboxDir))
	}
	v = c.checkKernel(ctx, key, e, cfg, v)
	if !v.Unmeshed {
		c.clear(key)
		return
	}
	st := c.state(key, e, v)
	if !st.flagged {
		c.flag(e, v)
		c.mu.Lock()
		st.flagged = true
		c.mu.Unlock()
		c.setGauge()
	}
	c.mu.Lock()
	done, wait := st.done, st.retryAt.Sub(c.cfg.Now())
	c.mu.Unlock()
	if done || wait > 0 { // backing off: the scheduled retry comes
		return
	}
	out := c.act(ctx, e, cfg)
	c.m.repairs.WithLabelValues(string(c.cfg.Mode), out.result).Inc()
	if out.reason != "" && c.cfg.Recorder != nil {
		c.cfg.Recorder.Event(ref(e), out.eventType, out.reason, out.message)
	}
	if out.result == resultFailed {
		c.log.Warn("repair of an unmeshed pod failed; backing off", "pod", key, "uid", string(e.UID), "error", out.message)
		c.retryLater(key, st)
		return
	}
	c.backoff.Forget(key)
	c.mu.Lock()
	st.done = true
	since, detected := c.cfg.Now().Sub(c.activeSince), c.cfg.Now().Sub(st.detected)
	c.mu.Unlock()
	c.log.Info("unmeshed pod handled", "pod", key, "uid", string(e.UID), "result", out.result, "detail", out.message,
		"sinceActiveMs", since.Milliseconds(), "sinceDetectedMs", detected.Milliseconds())
}

// state is the pod's state for its current sandbox: a new pod (UID) or a
// new sandbox of it starts afresh (flagged and acted on again).
func (c *Controller) state(key string, e *podcache.Entry, v unmeshed.Verdict) *podState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.pods[key]
	if !ok || st.uid != string(e.UID) || st.sandbox != v.Sandbox {
		st = &podState{uid: string(e.UID), sandbox: v.Sandbox, detected: c.cfg.Now()}
		c.pods[key] = st
		c.backoff.Forget(key) // a new sandbox starts without the old one's failures
	}
	return st
}

// clear forgets a pod that is not (or no longer) unmeshed.
func (c *Controller) clear(key string) {
	c.backoff.Forget(key)
	c.mu.Lock()
	_, had := c.pods[key]
	delete(c.pods, key)
	c.mu.Unlock()
	if had {
		c.setGauge()
	}
}

func (c *Controller) setGauge() {
	c.mu.Lock()
	n := 0
	for _, st := range c.pods {
		if st.flagged {
			n++
		}
	}
	c.mu.Unlock()
	c.m.unmeshed.Set(float64(n))
}

// flag makes the pod visible: Warning Event, log line (the gauge is the
// caller's).
func (c *Controller) flag(e *podcache.Entry, v unmeshed.Verdict) {
	msg := "POD RUNS WITHOUT THE MESH REDIRECT: " + v.Reason + "; " + c.cfg.Mode.action()
	c.log.Warn("unmeshed pod", "pod", e.Namespace+"/"+e.Name, "uid", string(e.UID), "reason", v.Reason,
		"action", c.cfg.Mode.action(), "owners", strings.Join(e.Status.OwnerKinds, ","),
		"restartPolicy", string(e.Status.RestartPolicy), "podIPs", strings.Join(e.Status.PodIPs, ","))
	if c.cfg.Recorder != nil {
		c.cfg.Recorder.Event(ref(e), corev1.EventTypeWarning, ReasonUnmeshed, msg)
	}
}

func ref(e *podcache.Entry) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: e.Namespace, Name: e.Name,
		UID: e.UID, ResourceVersion: e.ResourceVersion}
}

// recordsPass prunes the records of pods gone and reports unreadable ones.
func (c *Controller) recordsPass(cfg *config.Config) {
	if cfg.SandboxDir == "" {
		return
	}
	entries := c.recs.fresh(cfg.SandboxDir)
	c.recs.reportBad(entries)
	for _, r := range unmeshed.Stale(entries, c.cfg.Cache.List(), c.cfg.Now(), c.cfg.RecordGrace) {
		c.recs.remove(cfg.SandboxDir, r)
	}
}
