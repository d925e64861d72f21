package repair

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/workqueue"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/podcache"
)

// Cache is the agent's node-scoped pod cache (pkg/podcache).
type Cache interface {
	Synced() bool
	List() []*podcache.Entry
	Peek(namespace, name string) (*podcache.Entry, bool)
	Subscribe(fn func(podcache.Event)) error
}

// Recorder posts Events (client-go's record.EventRecorder is one).
type Recorder interface {
	Event(object runtime.Object, eventtype, reason, message string)
}

// Config is the controller's validated configuration and its parts.
type Config struct {
	Mode     Mode
	NodeName string
	// State is the installer's last word: the conflist the runtime uses
	// (container path) and whether our entry is in place in it. Nothing is
	// flagged or acted on while installed is false: a pod deleted then
	// would come back unmeshed.
	State    func() (conflistPath string, installed bool)
	Cache    Cache
	Pods     typedcorev1.PodsGetter
	InPlace  InPlace  // ModeRepair only
	Recorder Recorder // nil: no Events
	Registry prometheus.Registerer
	Logger   *slog.Logger

	// Zero values take the defaults.
	BackoffBase  time.Duration                             // first retry after a failure (1s) ...
	BackoffMax   time.Duration                             // ... doubling up to this (5m)
	RecordGrace  time.Duration                             // a record younger than this is never pruned (2m)
	SafetyResync time.Duration                             // every pod looked at again, whatever happened (10m)
	Workers      int                                       // (4)
	LoadConfig   func(path string) (*config.Config, error) // config.Load
	Now          func() time.Time
}

func (c *Config) defaults() error {
	if _, err := ParseMode(string(c.Mode)); err != nil {
		return err
	}
	if c.State == nil || c.Cache == nil || c.Registry == nil {
		return errors.New("repair: State, Cache and Registry are required")
	}
	if c.Mode != ModeOff && c.Pods == nil {
		return errors.New("repair: mode " + string(c.Mode) + " needs a pods client")
	}
	if c.Mode == ModeRepair && c.InPlace == nil {
		return errors.New("repair: mode repair needs the in-place repairer (pkg/inplace)")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.BackoffBase, time.Second)
	def(&c.BackoffMax, 5*time.Minute)
	def(&c.RecordGrace, 2*time.Minute)
	def(&c.SafetyResync, 10*time.Minute)
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.LoadConfig == nil {
		c.LoadConfig = config.Load
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// recordsKey is the queue item of the records pass (prune, report corrupt).
const recordsKey = "\x00records"

// Controller is the repair controller of one node.
type Controller struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	queue workqueue.TypedDelayingInterface[string]
	// backoff spaces the retries of a failing pod; the pod's own updates
	// do not cut it short (podState.retryAt).
	backoff workqueue.TypedRateLimiter[string]
	recs    *recordSet

	mu          sync.Mutex
	pods        map[string]*podState // by namespace/name
	deleted     map[string]time.Time // namespace/Kind/Name of a controller -> when we last deleted its pod
	verified    map[string]string    // namespace/name -> UID|sandbox whose netns was looked into (checkKernel)
	activeSince time.Time            // when installed and synced first held
	plugCfg     *config.Config
	plugCfgPath string
	lastCfgErr  string
}

// podState is what the controller did about one pod's current sandbox.
type podState struct {
	uid, sandbox string
	detected     time.Time
	flagged      bool      // Unmeshed Event posted, gauge counts it
	done         bool      // the mode's action succeeded (or has nothing to do)
	retryAt      time.Time // after a failure: no new attempt before
}

// New builds the controller and subscribes it to the cache.
func New(cfg Config) (*Controller, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c := &Controller{
		cfg:      cfg,
		log:      cfg.Logger.With("part", "repair", "mode", string(cfg.Mode)),
		m:        newMetrics(cfg.Registry),
		pods:     map[string]*podState{},
		deleted:  map[string]time.Time{},
		verified: map[string]string{},
		queue:    workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[string]{Name: "mesh-cni-repair"}),
		backoff:  workqueue.NewTypedItemExponentialFailureRateLimiter[string](cfg.BackoffBase, cfg.BackoffMax),
	}
	c.recs = newRecordSet(c.log, c.onRecordsChanged)
	if err := cfg.Cache.Subscribe(c.onPod); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Controller) onPod(ev podcache.Event) {
	c.queue.Add(ev.Entry.Namespace + "/" + ev.Entry.Name)
}

func (c *Controller) onRecordsChanged() { c.enqueueAll() }

// Notify tells the controller the installer's state may have changed
// (installer OnState); it never blocks.
func (c *Controller) Notify() { c.enqueueAll() }

func (c *Controller) enqueueAll() {
	c.queue.Add(recordsKey)
	for _, e := range c.cfg.Cache.List() {
		c.queue.Add(e.Namespace + "/" + e.Name)
	}
}

// Run works the queue until ctx is done.
func (c *Controller) Run(ctx context.Context) {
	defer c.queue.ShutDown()
	defer c.recs.close()
	var wg sync.WaitGroup
	for i := 0; i < c.cfg.Workers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.work(ctx) }()
	}
	go c.waitSynced(ctx)
	t := time.NewTicker(c.cfg.SafetyResync)
	defer t.Stop()
	c.log.Info("repair controller started", "node", c.cfg.NodeName)
	for {
		select {
		case <-ctx.Done():
			c.queue.ShutDown()
			wg.Wait()
			return
		case <-t.C:
			c.enqueueAll()
		}
	}
}

func (c *Controller) waitSynced(ctx context.Context) {
	for !c.cfg.Cache.Synced() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	c.enqueueAll()
}

func (c *Controller) work(ctx context.Context) {
	for {
		key, shutdown := c.queue.Get()
		if shutdown {
			return
		}
		c.handle(ctx, key)
		c.queue.Done(key)
	}
}

func (c *Controller) handle(ctx context.Context, key string) {
	cfg, ok := c.active()
	if !ok {
		return // Notify and the sync bring it back
	}
	if key == recordsKey {
		c.recordsPass(cfg)
		return
	}
	c.reconcile(ctx, key, cfg)
}

// retryLater schedules the next attempt after a failure, backing off.
func (c *Controller) retryLater(key string, st *podState) {
	d := c.backoff.When(key)
	c.mu.Lock()
	st.retryAt = c.cfg.Now().Add(d)
	c.mu.Unlock()
	c.queue.AddAfter(key, d)
}
