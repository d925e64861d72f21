package installer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// reconcile brings the node to the desired state and returns when to look
// again (0: on the next event or resync).
func (in *Installer) reconcile(trigger string) time.Duration {
	defer in.passes.Add(1)
	if in.passive && !in.checkPassive() {
		return 0
	}
	if in.takenOver() {
		return 0
	}
	var problems []string
	retry := time.Duration(0)
	fail := func(what string, err error) {
		in.m.reconcileErrs.Inc()
		in.log.Error("cannot put "+what+" in place; will retry", "err", err, "trigger", trigger)
		problems = append(problems, what+": "+err.Error())
		retry = errorRetry
	}
	if err := in.ensureBinary(); err != nil {
		fail("plug-in binary", err)
	}
	var tokenErr *pluginTokenError
	switch err := in.ensureKubeconfig(); {
	case errors.As(err, &tokenErr):
		// No retry timer: the token source wakes us when it has a token
		// (and logs its own attempts). Logged once per distinct problem.
		problems = append(problems, "kubeconfig: "+err.Error())
		if in.tokenWait != err.Error() {
			in.tokenWait = err.Error()
			in.log.Error("no valid plug-in token: the kubeconfig is not in place; waiting for the token source", "err", err, "trigger", trigger)
		}
	case err != nil:
		fail("kubeconfig", err)
	default:
		in.tokenWait = ""
	}
	ok, settle, err := in.ensureConflist(trigger)
	switch {
	case err != nil:
		fail("config entry", err)
	case settle:
		retry = settleRetry
		if !ok {
			problems = append(problems, "config entry: waiting for a file being written to settle")
		}
	case !ok:
		problems = append(problems, "config entry: no primary CNI configuration in "+in.cfg.NetDir+" yet")
	}
	if len(problems) == 0 {
		if !in.installed {
			in.installed = true
			in.log.Info("installation in place: plug-in binary, kubeconfig and config entry", "binary", in.binPath, "kubeconfig", in.kubeconfigPath)
		}
		in.setReady(true, "")
	} else {
		in.setReady(false, strings.Join(problems, "; "))
	}
	return retry
}

// takenOver reads the owner file. A claim of an instance that started later
// means it has taken over: this instance turns passive. An older instance's
// claim (two claims raced), a missing or garbled owner file are drift: the
// claim is rewritten.
func (in *Installer) takenOver() bool {
	o, err := ReadOwner(in.cfg.NetDir)
	switch {
	case err == nil && o != nil && o.InstanceID != in.cfg.InstanceID && !o.Since.Before(in.started):
		in.passive = true
		in.passiveA.Store(true)
		in.m.owner.Set(0)
		in.log.Warn("another install-cni instance took over this node; this instance stops reconciling and will not clean up on exit",
			"newOwner", o.InstanceID, "newOwnerPod", o.PodName)
		in.checkPassive()
		return in.passive
	case err != nil || o == nil || o.InstanceID != in.cfg.InstanceID || !slices.Equal(o.Conversions, in.conversions):
		if in.installed && (err != nil || o == nil || o.InstanceID != in.cfg.InstanceID) {
			in.m.repairs.WithLabelValues("owner").Inc()
		}
		if werr := in.writeOwner(); werr != nil {
			in.log.Error("cannot write owner file", "err", werr)
		}
	}
	return false
}

// checkPassive computes readiness without touching anything: the files are
// there and the primary carries one mesh-cni entry, last. When the owner is
// gone (no owner file) or silent (stale heartbeat), this instance takes over
// again and checkPassive returns true.
func (in *Installer) checkPassive() bool {
	o, err := ReadOwner(in.cfg.NetDir)
	st, serr := os.Stat(in.ownerPath)
	if err == nil && (o == nil || (serr == nil && o.Stale(st.ModTime()))) {
		prev := ""
		if o != nil {
			prev = o.InstanceID
		}
		in.log.Warn("the owning instance is gone (no owner file or no heartbeat); taking over again", "previousOwner", prev)
		if o != nil {
			in.conversions = o.Conversions
		}
		in.passive = false
		in.passiveA.Store(false)
		in.m.owner.Set(1)
		if werr := in.writeOwner(); werr != nil {
			in.log.Error("cannot write owner file", "err", werr)
		}
		return true
	}
	var problems []string
	if _, err := os.Stat(in.binPath); err != nil {
		problems = append(problems, "plug-in binary missing")
	}
	if _, err := os.Stat(in.kubeconfigPath); err != nil {
		problems = append(problems, "kubeconfig missing")
	}
	files, _, err := readNetDir(in.cfg.NetDir)
	primary := ""
	if err == nil {
		primary, _ = SelectPrimary(files, in.cfg.ConfName)
	}
	in.conflist = ""
	if primary != "" && isConfList(primary) {
		in.conflist = filepath.Join(in.cfg.NetDir, primary)
	}
	if primary == "" || !isConfList(primary) {
		problems = append(problems, "no conflist primary")
	} else if n, _, err := countEntries(fileData(files, primary)); err != nil || n != 1 {
		problems = append(problems, "no mesh-cni entry in "+primary)
	}
	if len(problems) == 0 {
		in.setReady(true, "")
	} else {
		in.setReady(false, "passive (another instance owns the node): "+strings.Join(problems, "; "))
	}
	return false
}

// ensureBinary installs the plug-in binary (mode 0755) unless the bin dir
// already holds the same bytes.
func (in *Installer) ensureBinary() error {
	st, exists := stampOf(in.binPath)
	if exists && st.mode.Perm() == 0o755 {
		// Same stamp as our last check or write: no need to hash it again.
		if st == in.binStamp {
			return nil
		}
		if sum, _, err := hashFile(in.binPath); err == nil && sum == in.srcHash {
			in.binStamp = st
			return nil
		}
	}
	in.own[in.binPath] = in.srcHash
	if err := copyFileAtomic(in.cfg.PluginBinary, in.binPath, 0o755); err != nil {
		delete(in.own, in.binPath)
		return err
	}
	in.binStamp, _ = stampOf(in.binPath)
	in.m.installs.WithLabelValues("binary").Inc()
	if in.installed {
		in.m.repairs.WithLabelValues("binary").Inc()
		in.log.Warn("plug-in binary was missing or changed; restored", "binary", in.binPath)
	} else {
		in.log.Info("plug-in binary installed", "binary", in.binPath)
	}
	return nil
}

// ensureKubeconfig writes the plug-in's token when it changed (a new token
// from cfg.PluginToken, or a rotation of the mounted one it copies without
// a PluginToken) and the kubeconfig when it is missing or outdated (both
// 0600). The token goes first: the kubeconfig refers to it.
func (in *Installer) ensureKubeconfig() error {
	sa, err := ReadServiceAccount(in.cfg.ServiceAccountDir)
	if err != nil {
		return err
	}
	token := sa.Token
	if in.cfg.PluginToken != nil {
		// Without a valid token the file keeps the last one written: it is
		// either still valid or refused by the API server anyway.
		if token, err = in.cfg.PluginToken.Token(); err != nil {
			return &pluginTokenError{err}
		}
	}
	if !upToDate(in.tokenPath, token, 0o600) {
		_, existed := stampOf(in.tokenPath)
		if err := in.write(in.tokenPath, token, 0o600, ""); err != nil {
			return fmt.Errorf("token file: %w", err)
		}
		in.m.installs.WithLabelValues("token").Inc()
		if existed {
			in.m.tokenRefresh.Inc()
			in.log.Info("plug-in token changed (refresh or rotation); host file replaced", "file", in.tokenPath)
		}
	}
	kc, err := BuildKubeconfig(in.cfg.APIServer, sa.CA, in.cfg.TokenHostPath())
	if err != nil {
		return err
	}
	if !upToDate(in.kubeconfigPath, kc, 0o600) {
		if err := in.write(in.kubeconfigPath, kc, 0o600, ""); err != nil {
			return err
		}
		in.m.installs.WithLabelValues("kubeconfig").Inc()
		if in.installed {
			in.m.repairs.WithLabelValues("kubeconfig").Inc()
		}
		in.log.Info("plug-in kubeconfig written", "file", in.kubeconfigPath, "server", in.cfg.APIServer)
	}
	return nil
}

// pluginTokenError is the token source having no valid token.
type pluginTokenError struct{ err error }

func (e *pluginTokenError) Error() string { return "plug-in token: " + e.err.Error() }
func (e *pluginTokenError) Unwrap() error { return e.err }

func upToDate(path string, data []byte, mode os.FileMode) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().Perm() == mode && sameContent(path, data)
}

// maxMergeAttempts bounds the re-reads of one pass when config files keep
// changing under us; the next pass comes settleRetry later.
const maxMergeAttempts = 5

// ensureConflist applies PlanInstall to the net dir. ok means our entry is in
// place afterwards; settle means a file is still changing (a young invalid
// file may still be being written, or another writer changed a file while
// we merged it) and the caller should look again shortly.
func (in *Installer) ensureConflist(trigger string) (ok, settle bool, err error) {
	for attempt := 1; ; attempt++ {
		ok, settle, err = in.ensureConflistOnce(trigger)
		if !errors.Is(err, errChanged) {
			return ok, settle, err
		}
		in.m.conflicts.Inc()
		// Counted, and at debug level: an agent rewriting in a loop would
		// flood the log (the drift warning speaks for it).
		in.log.Debug("a config file changed while we merged it; reading it again", "err", err, "attempt", attempt)
		if attempt == maxMergeAttempts {
			return false, true, nil
		}
	}
}

func (in *Installer) ensureConflistOnce(trigger string) (ok, settle bool, err error) {
	files, mtimes, err := readNetDir(in.cfg.NetDir)
	if err != nil {
		return false, false, err
	}
	in.linkTargets = map[string]bool{}
	for _, f := range files {
		if f.Link {
			in.linkTargets[clean(f.Real)] = true
		}
	}
	plan, err := PlanInstall(files, in.cfg.ConfName, in.entry, in.conversions)
	if err != nil {
		return false, false, fmt.Errorf("primary %s: %w", plan.Primary, err)
	}
	in.conflist = ""
	if plan.Target != "" {
		in.conflist = filepath.Join(in.cfg.NetDir, plan.Target)
	}
	for _, s := range plan.Skipped {
		if (plan.Primary == "" || s.Name < plan.Primary) && time.Since(mtimes[s.Name]) < settleWindow {
			return plan.InPlace(), true, nil
		}
	}
	if plan.Primary == "" {
		if !in.waiting || time.Since(in.lastWaitLog) >= waitLogEvery {
			in.log.Info("waiting for the primary CNI to write its configuration", "netDir", in.cfg.NetDir,
				"confName", in.cfg.ConfName, "skippedInvalid", fmt.Sprint(plan.Skipped))
			in.lastWaitLog = time.Now()
		}
		in.waiting = true
		return false, false, nil
	}
	in.waiting = false
	if plan.InPlace() {
		return true, false, nil
	}
	for _, s := range plan.Skipped {
		if in.skipLogged[s.Name] != s.Reason {
			in.skipLogged[s.Name] = s.Reason
			in.log.Warn("skipped an invalid CNI config file (runtimes skip it too)", "file", s.Name, "reason", s.Reason)
		}
	}
	for _, w := range plan.Writes {
		path := commitPath(in.cfg.NetDir, files, w.Name)
		keep := commitPath(in.cfg.NetDir, files, w.ModeFrom)
		in.cfg.hooks.onAfterRead(path)
		if err := in.writeConf(path, w.Data, keep, guardFor(files, w.Name)); err != nil {
			return false, false, fmt.Errorf("%s: %w", path, err)
		}
		in.m.installs.WithLabelValues("conflist").Inc()
	}
	for _, r := range plan.Removes {
		path := filepath.Join(in.cfg.NetDir, r)
		if err := in.removeConf(path, guardFor(files, r)); err != nil {
			return false, false, fmt.Errorf("remove %s: %w", path, err)
		}
	}
	if !slices.Equal(plan.Conversions, in.conversions) {
		in.conversions = plan.Conversions
		if err := in.writeOwner(); err != nil {
			return false, false, fmt.Errorf("owner file: %w", err)
		}
	}
	reasons := make([]string, len(plan.Reasons))
	for i, r := range plan.Reasons {
		reasons[i] = string(r)
	}
	if in.installed {
		for _, r := range plan.Reasons {
			in.m.repairs.WithLabelValues(string(r)).Inc()
		}
		in.log.Warn("mesh-cni entry drifted; restored", "file", plan.Target, "primary", plan.Primary,
			"reasons", strings.Join(reasons, ","), "trigger", trigger)
		in.noteDrift(plan.Target, reasons)
	} else {
		in.log.Info("mesh-cni entry inserted", "file", plan.Target, "primary", plan.Primary,
			"reasons", strings.Join(reasons, ","), "removed", strings.Join(plan.Removes, ","))
	}
	return true, false, nil
}

// noteDrift warns when our entry keeps being undone: more than
// DriftWarnCount repairs within DriftWarnWindow. Repairs go on regardless.
func (in *Installer) noteDrift(file string, reasons []string) {
	now := time.Now()
	in.drifts = append(in.drifts, now)
	cut := 0
	for cut < len(in.drifts) && now.Sub(in.drifts[cut]) > in.cfg.DriftWarnWindow {
		cut++
	}
	in.drifts = in.drifts[cut:]
	if len(in.drifts) <= in.cfg.DriftWarnCount || now.Sub(in.lastWarn) < in.cfg.DriftWarnWindow {
		return
	}
	in.lastWarn = now
	in.m.driftWarnings.Inc()
	in.log.Warn(fmt.Sprintf("the mesh-cni entry was undone %d times within %s: something keeps rewriting %s. "+
		"Likely cause: the primary CNI runs in exclusive mode or regenerates its config on a loop "+
		"(e.g. Cilium with cni.exclusive=true, or an agent that owns the whole net dir). "+
		"Pods starting between a rewrite and our repair are not redirected. Configure that agent to keep "+
		"chained plug-ins, or point --cni-conf-name at a file it leaves alone. Repairs continue.",
		len(in.drifts), in.cfg.DriftWarnWindow, file), "file", file, "lastReasons", strings.Join(reasons, ","))
}

// isOwnWrite reports whether path holds exactly what this instance last
// wrote there.
func (in *Installer) isOwnWrite(path string) bool {
	h, ok := in.own[path]
	if !ok {
		return false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	return bytes.Equal(h[:], sha256Sum(data))
}
