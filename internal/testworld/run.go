package testworld

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Running is a function of the shape of consumer.Worker.Run running in a goroutine of its own.
type Running struct {
	cancel  context.CancelFunc
	done    chan struct{}
	err     error // what run returned, once done is closed
	stop    sync.Once
	stopErr error
}

// Go runs run in a goroutine of its own, with a context that Stop ends, and waits until run calls
// ready. It fails if run returns first or has not called ready within Patience.
func Go(run func(ctx context.Context, ready func()) error) (*Running, error) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{cancel: cancel, done: make(chan struct{})}
	ready := make(chan struct{})
	var once sync.Once
	go func() {
		defer close(r.done)
		r.err = run(ctx, func() { once.Do(func() { close(ready) }) })
	}()
	select {
	case <-ready:
		return r, nil
	case <-r.done:
		cancel()
		return nil, errors.Join(errors.New("stopped before it was ready"), r.err)
	case <-time.After(Patience):
		return nil, errors.Join(fmt.Errorf("not ready within %s", Patience), r.Stop())
	}
}

// Run is Go for a test: it fails tb if run does not get ready, and stops run when the test ends,
// failing tb if run then returns an error.
func Run(tb testing.TB, what string, run func(ctx context.Context, ready func()) error) *Running {
	tb.Helper()
	r, err := Go(run)
	if err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
	tb.Cleanup(func() {
		if err := r.Stop(); err != nil {
			tb.Errorf("%s: %v", what, err)
		}
	})
	return r
}

// Done is closed once run has returned; Err then says what it returned.
func (r *Running) Done() <-chan struct{} { return r.done }

// Err is what run returned, once Done is closed.
func (r *Running) Err() error { return r.err }

// Stop ends run's context and waits until run returns, at most Patience, and returns run's
// error. Only the first call stops; later ones return the same.
func (r *Running) Stop() error {
	r.stop.Do(func() {
		r.cancel()
		select {
		case <-r.done:
			r.stopErr = r.err
		case <-time.After(Patience):
			r.stopErr = fmt.Errorf("did not return within %s of its context ending", Patience)
		}
	})
	return r.stopErr
}
