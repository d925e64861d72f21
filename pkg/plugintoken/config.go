// Package plugintoken gives the CNI plug-in an identity of its own: it mints
// a short-lived token for the plug-in's service account with the
// TokenRequest API (bound to the node's Node object), keeps
// it in memory and refreshes it well before it expires. install-cni's file
// work (pkg/installer) writes the token where the plug-in's kubeconfig
// points. See docs/installer.md.
package plugintoken

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// MinExpiry is the shortest lifetime the API server grants (it refuses a
// TokenRequest below 10 minutes).
const MinExpiry = 10 * time.Minute

// Config is the refresher's validated configuration.
type Config struct {
	Namespace      string        // the service account's namespace (the DaemonSet's)
	ServiceAccount string        // the plug-in's service account
	Expiry         time.Duration // requested lifetime; the API server may shorten it
	// BoundNode, when set, binds each token to that Node object (the
	// DaemonSet pod's node): the API server stops accepting it once the node
	// is deleted, and records the node with every request the plug-in makes.
	// (Binding to the DaemonSet pod is refused by the API server: the pod
	// runs as another service account.)
	BoundNode string
	// RefreshFraction of a token's lifetime after which a new one is asked
	// for (0.8: at 48 min of a 1 h token).
	RefreshFraction float64
	MinBackoff      time.Duration // first retry after a failed request ...
	MaxBackoff      time.Duration // ... doubling up to this
	RequestTimeout  time.Duration // each TokenRequest's deadline

	Clock    clock.Clock // nil: the real clock
	Logger   *slog.Logger
	Registry prometheus.Registerer // nil: metrics not exported
}

// Defaults fills what is unset.
func (c *Config) defaults() {
	if c.Expiry == 0 {
		c.Expiry = time.Hour
	}
	if c.RefreshFraction == 0 {
		c.RefreshFraction = 0.8
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = time.Minute
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 15 * time.Second
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate checks the configuration once, naming the field at fault.
func (c *Config) Validate() error {
	switch {
	case c.Namespace == "":
		return errors.New("plugintoken: Namespace (the service account's namespace, $POD_NAMESPACE) is empty")
	case c.ServiceAccount == "":
		return errors.New("plugintoken: ServiceAccount is empty")
	case c.Expiry < MinExpiry:
		return fmt.Errorf("plugintoken: Expiry %s is below the API server's minimum %s", c.Expiry, MinExpiry)
	case c.RefreshFraction <= 0 || c.RefreshFraction >= 1:
		return fmt.Errorf("plugintoken: RefreshFraction %v must be between 0 and 1", c.RefreshFraction)
	case c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("plugintoken: backoff %s..%s is not a positive range", c.MinBackoff, c.MaxBackoff)
	}
	return nil
}
