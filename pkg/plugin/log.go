package plugin

import (
	"io"
	"log/slog"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
)

// newLogger logs JSON to stderr (the runtime keeps it) and, when set, to
// logFile. Never stdout: that carries the CNI result alone.
func newLogger(level slog.Level, logFile string, args *skel.CmdArgs) (*slog.Logger, func()) {
	var w io.Writer = os.Stderr
	closeFn := func() {}
	var fileErr error
	if logFile != "" {
		f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err == nil {
			w, closeFn = io.MultiWriter(os.Stderr, f), func() { _ = f.Close() }
		} else {
			fileErr = err
		}
	}
	log := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})).With(
		"plugin", "mesh-cni", "containerID", args.ContainerID, "netns", args.Netns)
	if fileErr != nil {
		log.Warn("cannot open logFile; logging to stderr only", "error", fileErr)
	}
	return log, closeFn
}
