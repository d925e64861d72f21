// Package installer puts the mesh-cni plug-in on a node and keeps it there:
// it copies the binary, writes the plug-in kubeconfig, chains a mesh-cni
// entry as the last plug-in of the runtime's primary CNI configuration,
// repairs drift as soon as the net dir changes, and undoes its work on exit
// unless another instance has taken over. See docs/installer.md.
package installer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	settleWindow   = time.Second           // an invalid file this young may still be being written
	settleRetry    = 25 * time.Millisecond // re-check interval while it settles
	errorRetry     = time.Second
	waitLogEvery   = 30 * time.Second
	staleTempAge   = 30 * time.Second
	shutdownBudget = 10 * time.Second
)

// Installer is one install-cni instance.
type Installer struct {
	cfg     Config
	started time.Time
	log     *slog.Logger
	reg     *prometheus.Registry
	m       *metrics
	entry   []byte

	binPath, kubeconfigPath, tokenPath, ownerPath string

	healthLn, metricsLn net.Listener
	servers             []*http.Server
	serveWG             sync.WaitGroup

	srcHash [32]byte

	// Loop state: touched only by the Run goroutine.
	own         map[string][32]byte // path -> hash of what we last wrote there
	ownRemoved  map[string]bool     // paths we removed and whose event is still to come
	skipLogged  map[string]string   // invalid files already reported, with the reason
	linkTargets map[string]bool     // files config symlinks point to: their events count too
	conversions []Conversion
	installed   bool
	passive     bool
	binStamp    fileStamp
	lastWaitLog time.Time
	waiting     bool
	drifts      []time.Time
	lastWarn    time.Time
	tokenWait   string // the plug-in token problem last logged ("" = none)
	conflist    string // the primary conflist holding our entry, last seen ("" = none)

	ready     atomic.Bool
	notReady  atomic.Value // string: why not ready
	heartbeat atomic.Int64
	ran       atomic.Bool
	passiveA  atomic.Bool
	passes    atomic.Int64 // reconcile passes done (for tests and debugging)
}

// Run builds an installer from cfg and runs it until ctx is done; see
// (*Installer).Run.
func Run(ctx context.Context, cfg Config) error {
	in, err := New(cfg)
	if err != nil {
		return err
	}
	return in.Run(ctx)
}

// New checks cfg and opens the health and metrics listeners, so their
// addresses are known before Run.
func New(cfg Config) (*Installer, error) {
	if cfg.NetDir == "" || cfg.BinDir == "" || cfg.KubeconfigDir == "" || cfg.ServiceAccountDir == "" || cfg.PluginBinary == "" {
		return nil, errors.New("installer: config is missing directories (build it with ParseFlags)")
	}
	if cfg.HostKubeconfigDir == "" {
		cfg.HostKubeconfigDir = cfg.KubeconfigDir
	}
	if cfg.PluginLogLevel == "" {
		cfg.PluginLogLevel = cfg.LogLevel
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = randomID()
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = 15 * time.Second
	}
	if cfg.DriftWarnCount <= 0 {
		cfg.DriftWarnCount = 5
	}
	if cfg.DriftWarnWindow <= 0 {
		cfg.DriftWarnWindow = time.Minute
	}
	in := &Installer{
		cfg:            cfg,
		started:        time.Now().UTC(),
		log:            cfg.Logger,
		reg:            cfg.Registry,
		entry:          cfg.Entry(),
		binPath:        filepath.Join(cfg.BinDir, PluginType),
		kubeconfigPath: filepath.Join(cfg.KubeconfigDir, KubeconfigName),
		tokenPath:      filepath.Join(cfg.KubeconfigDir, TokenName),
		ownerPath:      filepath.Join(cfg.NetDir, OwnerFileName),
		own:            map[string][32]byte{},
		ownRemoved:     map[string]bool{},
		skipLogged:     map[string]string{},
	}
	if in.log == nil {
		in.log = NewLogger(os.Stderr, cfg.LogLevel)
	}
	in.log = in.log.With("instance", cfg.InstanceID)
	if in.reg == nil {
		in.reg = defaultRegistry()
	}
	in.m = newMetrics(in.reg)
	in.notReady.Store("starting")
	if err := in.listen(); err != nil {
		return nil, err
	}
	return in, nil
}

// NewLogger returns the installer's JSON logger at level.
func NewLogger(w *os.File, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// HealthAddr is the bound address of /healthz and /readyz ("" when off).
func (in *Installer) HealthAddr() string { return lnAddr(in.healthLn) }

// MetricsAddr is the bound address of /metrics ("" when off).
func (in *Installer) MetricsAddr() string {
	if in.metricsLn == nil && in.cfg.MetricsAddr != "" {
		return in.HealthAddr() // shared listener
	}
	return lnAddr(in.metricsLn)
}

// Ready reports what /readyz reports.
func (in *Installer) Ready() bool { return in.ready.Load() }

// Passive reports whether another instance has taken over.
func (in *Installer) Passive() bool { return in.passiveA.Load() }

func lnAddr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Run installs, keeps the installation in place until ctx is done, then
// cleans up (unless --skip-cleanup or another instance owns the node). It
// returns nil after a clean stop.
func (in *Installer) Run(ctx context.Context) error {
	if !in.ran.CompareAndSwap(false, true) {
		return errors.New("installer: Run called twice")
	}
	in.serve()
	defer in.stopServing()

	if err := in.prepare(); err != nil {
		return err
	}
	w, err := newDirWatcher(in)
	if err != nil {
		return err
	}
	defer w.close()

	resync := time.NewTicker(in.cfg.ResyncInterval)
	defer resync.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()

	schedule := func(d time.Duration) {
		if d > 0 {
			retry.Reset(d)
		}
	}
	var tokenChanged <-chan struct{} // nil: never ready
	if in.cfg.PluginToken != nil {
		tokenChanged = in.cfg.PluginToken.Changed()
	}
	schedule(in.reconcile("start"))
	for {
		in.heartbeat.Store(time.Now().UnixNano())
		trigger := ""
		select {
		case <-ctx.Done():
			return in.shutdown()
		case ev := <-w.events:
			trigger = in.triggerFor(ev)
		case err := <-w.errors:
			in.log.Warn("file watch error; checking everything", "err", err)
			trigger = "watch-error"
		case <-resync.C:
			w.rewatch()
			in.removeStaleTemps()
			in.ownerHeartbeat()
			trigger = "resync"
		case <-retry.C:
			trigger = "retry"
		case <-tokenChanged:
			trigger = "plugin-token"
		}
		// Coalesce whatever else is already queued into the same pass.
	drain:
		for {
			select {
			case ev := <-w.events:
				if t := in.triggerFor(ev); t != "" && trigger == "" {
					trigger = t
				}
			default:
				break drain
			}
		}
		if trigger != "" {
			schedule(in.reconcile(trigger))
		}
	}
}

// prepare creates the directories, removes stale temps, checks the source
// binary and records this instance as the owner.
func (in *Installer) prepare() error {
	for _, d := range []string{in.cfg.NetDir, in.cfg.BinDir, in.cfg.KubeconfigDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	in.removeStaleTemps()
	sum, _, err := hashFile(in.cfg.PluginBinary)
	if err != nil {
		return fmt.Errorf("--plugin-binary: %w", err)
	}
	in.srcHash = sum

	prev, err := ReadOwner(in.cfg.NetDir)
	if err != nil {
		in.log.Warn("unreadable owner file; replacing it", "err", err)
	}
	if prev != nil {
		in.conversions = prev.Conversions
		if prev.InstanceID != in.cfg.InstanceID {
			in.log.Info("taking over the node's installation", "previousInstance", prev.InstanceID, "previousPod", prev.PodName)
		}
	}
	if err := in.writeOwner(); err != nil {
		return fmt.Errorf("write owner file: %w", err)
	}
	in.m.owner.Set(1)
	in.log.Info("install-cni started", "netDir", in.cfg.NetDir, "binDir", in.cfg.BinDir,
		"kubeconfig", in.kubeconfigPath, "confName", in.cfg.ConfName, "entry", string(in.entry))
	return nil
}

// ownerHeartbeat touches the owner file's mtime (an attribute change, which
// the watchers ignore) so passive instances know the owner is alive.
func (in *Installer) ownerHeartbeat() {
	if in.passive {
		return
	}
	now := time.Now()
	if err := os.Chtimes(in.ownerPath, now, now); err != nil && !errors.Is(err, os.ErrNotExist) {
		in.log.Warn("owner heartbeat failed", "err", err)
	}
}

func (in *Installer) removeStaleTemps() {
	for _, d := range uniq(in.cfg.NetDir, in.cfg.BinDir, in.cfg.KubeconfigDir) {
		removed, err := RemoveStaleTemps(d, staleTempAge)
		if err != nil {
			in.log.Warn("cannot list for stale temp files", "dir", d, "err", err)
		}
		for _, r := range removed {
			in.log.Info("removed stale temp file of an interrupted write", "file", filepath.Join(d, r))
		}
	}
}

func (in *Installer) owner() Owner {
	return Owner{
		InstanceID:  in.cfg.InstanceID,
		PodName:     in.cfg.PodName,
		PodUID:      in.cfg.PodUID,
		NodeName:    in.cfg.NodeName,
		Since:       in.started,
		Heartbeat:   Duration(in.cfg.ResyncInterval),
		Conversions: in.conversions,
	}
}

func (in *Installer) writeOwner() error {
	return in.write(in.ownerPath, in.owner().encode(), 0o644, "")
}

// write writes one of our own files atomically and remembers the content
// hash, so the file event our own write causes is recognised and ignored.
func (in *Installer) write(path string, data []byte, mode os.FileMode, keepFrom string) error {
	return in.writeWith(path, data, mode, keepFrom, nil)
}

// writeConf writes a config file the primary CNI may rewrite at any time:
// only over exactly what g says the plan was computed from (errChanged
// otherwise, nothing written).
func (in *Installer) writeConf(path string, data []byte, keepFrom string, g guard) error {
	return in.writeWith(path, data, 0o644, keepFrom, func(tmp, path string) error {
		return commitGuarded(tmp, path, data, g, func() { in.cfg.hooks.onBeforeRename(path) })
	})
}

func (in *Installer) writeWith(path string, data []byte, mode os.FileMode, keepFrom string, commit commitFunc) error {
	in.own[path] = sha256.Sum256(data)
	err := writeAtomic(path, mode, keepFrom, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, commit)
	if err != nil {
		delete(in.own, path)
		return err
	}
	return nil
}

func (in *Installer) remove(path string) error {
	in.ownRemoved[path] = true
	delete(in.own, path)
	ok, err := removeIfExists(path)
	if !ok {
		delete(in.ownRemoved, path)
	}
	return err
}

// removeConf removes a config file only if it still holds what g says.
func (in *Installer) removeConf(path string, g guard) error {
	in.ownRemoved[path] = true
	delete(in.own, path)
	if err := removeGuarded(path, g); err != nil {
		delete(in.ownRemoved, path)
		return err
	}
	return nil
}

func (in *Installer) setReady(ok bool, why string) {
	in.ready.Store(ok)
	if ok {
		in.m.ready.Set(1)
		in.notReady.Store("")
	} else {
		in.m.ready.Set(0)
		in.notReady.Store(why)
	}
	if in.cfg.OnState != nil {
		in.cfg.OnState(State{Installed: ok, ConflistPath: in.conflist, Reason: why})
	}
}

func uniq(ss ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
