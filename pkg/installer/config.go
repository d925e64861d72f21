package installer

import (
	"encoding/json"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is everything the installer needs; ParseFlags builds it from flags
// and environment variables and validates every value.
type Config struct {
	NetDir             string          // host CNI net dir as mounted in the container
	BinDir             string          // host CNI bin dir as mounted in the container
	ConfName           string          // primary config file name; "" = the runtime's choice
	PluginBinary       string          // plug-in binary to copy (inside the image)
	KubeconfigDir      string          // where the plug-in kubeconfig and token copy are written (container path)
	HostKubeconfigDir  string          // the same directory as the host (and so the plug-in) sees it
	ServiceAccountDir  string          // projected service account volume (token, ca.crt)
	APIServer          string          // https URL of the API server for the plug-in
	ExcludeNamespaces  []string        // plug-in: namespaces never redirected
	FailurePolicy      string          // plug-in: Block | Alert
	PodLookupTimeout   time.Duration   // plug-in: retry budget of the pod GET
	IptablesBackend    string          // plug-in: auto | legacy | nft
	PluginLogLevel     string          // plug-in: debug | info | warn | error
	PluginLogFile      string          // plug-in: optional log file (host path)
	InstallerNamespace string          // plug-in: the DaemonSet's namespace ...
	InstallerPodPrefix string          // ... and pod-name prefix, skipped by the plug-in
	Redirect           json.RawMessage // plug-in: node-level redirect defaults (JSON object), nil = none
	HealthAddr         string          // /healthz and /readyz; "" disables
	MetricsAddr        string          // /metrics; "" disables
	LogLevel           string          // installer log level
	SkipCleanup        bool            // leave everything in place on exit
	InstanceID         string          // identity recorded in the owner file
	PodName            string          // informational, from the downward API
	PodUID             string          // informational, from the downward API
	NodeName           string          // informational, from the downward API
	ResyncInterval     time.Duration   // full reconcile even without events
	DriftWarnCount     int             // warn when our entry is undone more than this often ...
	DriftWarnWindow    time.Duration   // ... within this window
	AgentSocket        string          // plug-in and node agent: the agent's socket, same path on host and container; "" = no agent
	SandboxDir         string          // plug-in: where ADD records each sandbox for `mesh-cni inspect`; "" = the plug-in's default

	// Logger and Registry may be set by embedders and tests; ParseFlags
	// leaves them nil (a JSON logger on stderr and a fresh registry).
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// ReadyCheck, when set, must also pass for /readyz (the node agent's
	// cache and socket).
	ReadyCheck func() error
	// PluginToken, when set, supplies the token the plug-in's kubeconfig
	// uses (its own service account's, pkg/plugintoken) instead of a copy
	// of the mounted service account token.
	PluginToken TokenSource
	// OnState, when set, is told the installation's state after every
	// reconcile pass and when cleanup starts (pkg/readiness lifts the
	// node's readiness taint from it). It runs on the reconcile loop: it
	// must return at once (hand the state over, never block).
	OnState func(State)

	// hooks are set by this package's tests only (see raceHooks).
	hooks *raceHooks
}

// State is what the installer tells OnState.
type State struct {
	// Installed: our entry is the last plug-in of the conflist the runtime
	// uses, and the binary and the kubeconfig (with a valid token) are in
	// place; what /readyz reports of the installation.
	Installed bool
	// ConflistPath is that conflist as this process sees it (NetDir
	// joined with its name); "" while there is none.
	ConflistPath string
	// Reason says why not Installed ("" when Installed).
	Reason string
}

// TokenSource supplies the plug-in's token. The installer writes what Token
// returns to the token file (0600, atomically) and looks again whenever
// Changed is signalled; while Token fails it is not ready.
type TokenSource interface {
	Token() ([]byte, error)
	Changed() <-chan struct{}
}

// File names the installer owns.
const (
	KubeconfigName = "mesh-cni-kubeconfig"      // in KubeconfigDir
	TokenName      = "mesh-cni-token"           // the plug-in's token on the host, in KubeconfigDir
	OwnerFileName  = "mesh-cni-installer.owner" // in NetDir: which instance owns the node's installation
	tempPrefix     = ".mesh-cni-tmp-"           // temp files of atomic writes (never a config extension)
)
