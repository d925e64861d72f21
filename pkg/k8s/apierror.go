package k8s

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// APIError is an HTTP answer of the API server that is not a 2xx: its
// status, and what its Status body (if it sent one) says.
type APIError struct {
	Code    int    // HTTP status
	Reason  string // the Status body's reason ("Forbidden", ...), if any
	Message string // the Status body's message, else the body's start
	// RetryAfter is the server's Retry-After on a 429 or 5xx (0: none).
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("the API server answered %d %s", e.Code, http.StatusText(e.Code))
	if e.Reason != "" && e.Reason != strings.ReplaceAll(http.StatusText(e.Code), " ", "") {
		s += " (" + e.Reason + ")" // a reason the status line does not already say
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// class is what GetPod does with an error.
type class int

const (
	retry    class = iota // transient: ask again within the budget
	notFound              // the API says the pod does not exist
	final                 // the API answered and will answer the same: unavailable now
)

// classify decides an error's class. Only an HTTP answer is ever final:
// network errors, timeouts, garbage bodies are retried.
func classify(err error) class {
	var ae *APIError
	if !errors.As(err, &ae) {
		return retry
	}
	switch ae.Code {
	case http.StatusNotFound:
		return notFound
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusBadRequest,
		http.StatusMethodNotAllowed, http.StatusNotAcceptable:
		return final // credentials, RBAC, a request it cannot parse
	}
	return retry
}

// retryAfter is the wait an error asks for (0: none).
func retryAfter(err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}

// maxErrorText bounds the body text an APIError keeps.
const maxErrorText = 512

// newAPIError builds the error for a non-2xx answer with its (bounded) body.
func newAPIError(code int, header http.Header, body []byte) *APIError {
	e := &APIError{Code: code}
	if code == http.StatusTooManyRequests || code >= 500 {
		e.RetryAfter = parseRetryAfter(header.Get("Retry-After"))
	}
	var st struct {
		Kind    string `json:"kind"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
		e.Reason, e.Message = bound(st.Reason), bound(st.Message)
		return e
	}
	e.Message = bound(strings.TrimSpace(string(body)))
	return e
}

// parseRetryAfter reads delay-seconds (what the API server sends) or an
// HTTP date; anything else, or a time past, is no wait.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

func bound(s string) string {
	if len(s) <= maxErrorText {
		return s
	}
	return s[:maxErrorText] + "…"
}
