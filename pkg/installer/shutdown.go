package installer

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
)

// shutdown undoes this instance's work: our entry leaves every conflist
// (restoring a .conf we converted), then the kubeconfig and token copy, then
// the binary, then the owner file. Nothing is touched with --skip-cleanup or
// when another instance owns the node. The order keeps the node consistent
// at every step: no config ever names a missing binary.
func (in *Installer) shutdown() error {
	in.setReady(false, "shutting down")
	if in.cfg.SkipCleanup {
		in.log.Info("exiting without cleanup (--skip-cleanup): binary, kubeconfig and config entry stay in place")
		return nil
	}
	if in.passive {
		in.log.Info("exiting without cleanup: another instance owns the node's installation")
		return nil
	}
	o, err := ReadOwner(in.cfg.NetDir)
	if err == nil && o != nil && o.InstanceID != in.cfg.InstanceID {
		in.log.Info("exiting without cleanup: another instance took over", "newOwner", o.InstanceID, "newOwnerPod", o.PodName)
		return nil
	}
	if err == nil && o != nil {
		in.conversions = o.Conversions
	}
	var errs []error
	if err := in.cleanupConflists(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		// Keep binary and kubeconfig: a config entry may still name them.
		err := errors.Join(errs...)
		in.log.Error("cleanup of the config entry failed; leaving binary and kubeconfig in place", "err", err)
		return fmt.Errorf("cleanup: %w", err)
	}
	for _, p := range []string{in.kubeconfigPath, in.tokenPath, in.binPath, in.ownerPath} {
		if _, err := removeIfExists(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		in.log.Error("cleanup incomplete", "err", err)
		return fmt.Errorf("cleanup: %w", err)
	}
	in.log.Info("cleaned up: config entry, kubeconfig, token copy, binary and owner file removed")
	return nil
}

// cleanupConflists removes our entry from every conflist, guarded like the
// install: a file the primary CNI rewrote since our read is read again, so
// cleanup never reverts its newer content either.
func (in *Installer) cleanupConflists() error {
	for attempt := 1; ; attempt++ {
		err := in.cleanupConflistsOnce()
		if !errors.Is(err, errChanged) || attempt == maxMergeAttempts {
			return err
		}
		in.log.Info("a config file changed while we cleaned it up; reading it again", "err", err)
	}
}

func (in *Installer) cleanupConflistsOnce() error {
	files, _, err := readNetDir(in.cfg.NetDir)
	if err != nil {
		return err
	}
	plan, err := PlanCleanup(files, in.conversions)
	if err != nil {
		return err
	}
	for _, w := range plan.Writes {
		path := commitPath(in.cfg.NetDir, files, w.Name)
		g := guardFor(files, w.Name)
		if err := writeAtomic(path, 0o644, commitPath(in.cfg.NetDir, files, w.ModeFrom), func(wr io.Writer) error {
			_, err := wr.Write(w.Data)
			return err
		}, func(tmp, path string) error { return commitGuarded(tmp, path, w.Data, g, nil) }); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if w.Name != w.ModeFrom {
			in.log.Info("original .conf restored", "file", w.Name)
		} else {
			in.log.Info("mesh-cni entry removed", "file", w.Name)
		}
	}
	for _, r := range plan.Removes {
		path := filepath.Join(in.cfg.NetDir, r)
		if err := removeGuarded(path, guardFor(files, r)); err != nil {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		in.log.Info("converted conflist removed", "file", r)
	}
	return nil
}
