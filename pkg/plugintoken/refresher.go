package plugintoken

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Requester is the TokenRequest call: client-go's
// CoreV1().ServiceAccounts(namespace) satisfies it.
type Requester interface {
	CreateToken(ctx context.Context, serviceAccountName string, tr *authenticationv1.TokenRequest, opts metav1.CreateOptions) (*authenticationv1.TokenRequest, error)
}

// Refresher holds the plug-in's current token and renews it.
type Refresher struct {
	cfg     Config
	req     Requester
	log     *slog.Logger
	m       *metrics
	changed chan struct{}

	mu      sync.Mutex
	token   []byte
	issued  time.Time
	expires time.Time
}

// New checks cfg; Run then obtains and renews the token.
func New(cfg Config, req Requester) (*Refresher, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Refresher{cfg: cfg, req: req, m: newMetrics(cfg.Registry), changed: make(chan struct{}, 1),
		log: cfg.Logger.With("part", "plugin-token", "serviceAccount", cfg.Namespace+"/"+cfg.ServiceAccount)}, nil
}

// Token is the current token, or an error when there is none that has not
// expired (none obtained yet, or every renewal failed until it expired).
func (r *Refresher) Token() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.token == nil:
		return nil, fmt.Errorf("no token for service account %s/%s yet (TokenRequest pending or failing; see the plugin-token log lines)",
			r.cfg.Namespace, r.cfg.ServiceAccount)
	case !r.cfg.Clock.Now().Before(r.expires):
		return nil, fmt.Errorf("the token for service account %s/%s expired at %s and could not be renewed",
			r.cfg.Namespace, r.cfg.ServiceAccount, r.expires.UTC().Format(time.RFC3339))
	}
	return r.token, nil
}

// Changed is signalled whenever Token's answer changes (a new token, or the
// current one expired).
func (r *Refresher) Changed() <-chan struct{} { return r.changed }

func (r *Refresher) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// Run obtains a token at once and renews it at RefreshFraction of its
// lifetime until ctx is done. A failed request is retried with backoff
// while the previous token is kept until it expires.
func (r *Refresher) Run(ctx context.Context) {
	failures := 0
	attempt := r.cfg.Clock.Now()
	expiredSeen := false
	for {
		now := r.cfg.Clock.Now()
		if !now.Before(attempt) {
			if err := r.refresh(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				failures++
				attempt = r.cfg.Clock.Now().Add(backoff(failures, r.cfg.MinBackoff, r.cfg.MaxBackoff))
				r.logFailure(err, failures, attempt)
			} else {
				failures, expiredSeen = 0, false
				r.mu.Lock()
				attempt = refreshAt(r.issued, r.expires, r.cfg.RefreshFraction)
				r.mu.Unlock()
			}
		}
		expires := r.expiry()
		if !expiredSeen && !expires.IsZero() && !r.cfg.Clock.Now().Before(expires) {
			expiredSeen = true
			r.m.valid.Set(0)
			r.log.Error("the plug-in's token expired and could not be renewed: its fallback pod GET is refused until a TokenRequest succeeds",
				"expired", expires.UTC().Format(time.RFC3339), "failures", failures)
			r.notify()
		}
		t := r.cfg.Clock.NewTimer(nextWake(attempt, expires, r.cfg.Clock.Now()).Sub(r.cfg.Clock.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

func (r *Refresher) expiry() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.expires
}

// refresh asks for one token and, on success, makes it current.
func (r *Refresher) refresh(ctx context.Context) error {
	secs := int64(r.cfg.Expiry / time.Second)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		// No audiences: the API server's own, which is what the plug-in
		// presents its token to.
		ExpirationSeconds: &secs,
	}}
	if r.cfg.BoundNode != "" {
		// No UID: the API server binds to the Node it holds under that name.
		tr.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Node", APIVersion: "v1", Name: r.cfg.BoundNode}
	}
	issued := r.cfg.Clock.Now()
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	out, err := r.req.CreateToken(rctx, r.cfg.ServiceAccount, tr, metav1.CreateOptions{})
	if err == nil && (out == nil || out.Status.Token == "" || out.Status.ExpirationTimestamp.IsZero()) {
		err = errors.New("TokenRequest answered without a token or expiry")
	}
	if err != nil {
		result := "error"
		if apierrors.IsForbidden(err) {
			result = "forbidden"
		}
		r.m.requests.WithLabelValues(result).Inc()
		return fmt.Errorf("TokenRequest for %s/%s: %w", r.cfg.Namespace, r.cfg.ServiceAccount, err)
	}
	expires := out.Status.ExpirationTimestamp.Time
	r.mu.Lock()
	first := r.token == nil
	r.token, r.issued, r.expires = []byte(out.Status.Token), issued, expires
	r.mu.Unlock()
	r.m.requests.WithLabelValues("ok").Inc()
	r.m.expiry.Set(float64(expires.Unix()))
	r.m.valid.Set(1)
	r.log.Info("plug-in token obtained", "first", first, "expires", expires.UTC().Format(time.RFC3339),
		"nextRefresh", refreshAt(issued, expires, r.cfg.RefreshFraction).UTC().Format(time.RFC3339), "boundNode", r.cfg.BoundNode)
	r.notify()
	return nil
}

func (r *Refresher) logFailure(err error, failures int, next time.Time) {
	expires := r.expiry()
	args := []any{"error", err.Error(), "failures", failures, "retryAt", next.UTC().Format(time.RFC3339)}
	msg := "cannot obtain the plug-in's token; retrying"
	switch {
	case apierrors.IsForbidden(err):
		msg = "TokenRequest forbidden: the DaemonSet's service account may not mint the plug-in's token " +
			"(deploy/role-plugin-token.yaml: create on serviceaccounts/token for " + r.cfg.ServiceAccount + "); retrying"
	case apierrors.IsNotFound(err):
		msg = "TokenRequest: service account or bound node not found (deploy/serviceaccount-plugin.yaml); retrying"
	}
	if !expires.IsZero() && r.cfg.Clock.Now().Before(expires) {
		msg += "; keeping the previous token until it expires"
		args = append(args, "previousExpires", expires.UTC().Format(time.RFC3339))
	}
	r.log.Warn(msg, args...)
}
