package plugintoken

import "time"

// Decisions about time, as pure functions of the times involved.

// refreshAt is when a token issued at issued and expiring at expires is
// replaced: after fraction of its lifetime, leaving the rest (12 min of a
// 1 h token at 0.8) for retries while the old one still works.
func refreshAt(issued, expires time.Time, fraction float64) time.Time {
	life := expires.Sub(issued)
	if life <= 0 {
		return issued
	}
	return issued.Add(time.Duration(float64(life) * fraction))
}

// backoff is the wait after the n-th consecutive failure (n >= 1):
// min, 2*min, 4*min, ... capped at max.
func backoff(n int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// nextWake is when the refresher looks again: at the scheduled attempt, or
// earlier at the current token's expiry, so that its expiry is noticed (and
// reported) when it happens, not at the next retry.
func nextWake(attempt, expires, now time.Time) time.Time {
	if !expires.IsZero() && expires.After(now) && expires.Before(attempt) {
		return expires
	}
	return attempt
}
