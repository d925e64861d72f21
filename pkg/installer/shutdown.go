package installer

import (
	"errors"
	"fmt"
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
	files, _, err := readNetDir(in.cfg.NetDir)
	if err != nil {
		errs = append(errs, err)
	} else {
		plan, err := PlanCleanup(files, in.conversions)
		if err != nil {
			errs = append(errs, err)
		}
		for _, w := range plan.Writes {
			if err := WriteFileAtomic(filepath.Join(in.cfg.NetDir, w.Name), w.Data, 0o644, filepath.Join(in.cfg.NetDir, w.ModeFrom)); err != nil {
				errs = append(errs, err)
			} else if w.Name != w.ModeFrom {
				in.log.Info("original .conf restored", "file", w.Name)
			} else {
				in.log.Info("mesh-cni entry removed", "file", w.Name)
			}
		}
		if len(errs) == 0 {
			for _, r := range plan.Removes {
				if _, err := removeIfExists(filepath.Join(in.cfg.NetDir, r)); err != nil {
					errs = append(errs, err)
				} else {
					in.log.Info("converted conflist removed", "file", r)
				}
			}
		}
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
