package status

import (
	"context"
	"fmt"

	"github.com/nordpay/frontpay-worker/frontpay"
)

// Callbacks' read-backs are bounded twice over, so that forged callbacks cannot spend the
// commands' API budget (CONTRACT.md section 8):
//
//   - a share: each new read waits for the service's own limiter, Config.CallbackShare percent of
//     Config.APIRate, before the client's limiter, which every call shares;
//   - coalescing: the verifications of one reservation that ask while a read of it is under way
//     (waiting for the share or at the API) share that read.
//
// A callback needing a new read is answered 503, so that Front Payment sends it again, once the
// reads waiting for the share fill half a verification's time (Service.admits); one about a
// reservation being read is still taken.

// read is one read-back of a reservation, shared by the verifications that ask while it is under
// way.
type read struct {
	done chan struct{} // closed when res and err are set
	n    int           // verifications sharing it
	res  *frontpay.Result[frontpay.Reservation]
	err  error
}

// readBack reads a reservation back for a callback's verification, sharing a read under way.
func (s *Service) readBack(ctx context.Context, uuid string) (*frontpay.Result[frontpay.Reservation], error) {
	s.readMu.Lock()
	if r, ok := s.reads[uuid]; ok {
		r.n++
		s.readMu.Unlock()
		select {
		case <-r.done:
			return r.res, r.err
		case <-ctx.Done():
			s.readMu.Lock()
			r.n--
			s.readMu.Unlock()
			return nil, ctx.Err()
		}
	}
	r := &read{done: make(chan struct{}), n: 1}
	s.reads[uuid] = r
	s.readMu.Unlock()

	r.res, r.err = s.read(ctx, uuid)
	s.readMu.Lock()
	delete(s.reads, uuid)
	s.readMu.Unlock()
	close(r.done)
	return r.res, r.err
}

// read waits for the callbacks' share of the API rate, then reads the reservation.
func (s *Service) read(ctx context.Context, uuid string) (*frontpay.Result[frontpay.Reservation], error) {
	if s.share != nil {
		s.queued.Add(1)
		err := s.share.Wait(ctx)
		s.queued.Add(-1)
		if err != nil {
			return nil, fmt.Errorf("wait for the callbacks' share of FRONTPAY_API_RATE: %w", err)
		}
	}
	return s.api.Details(ctx, uuid)
}

// admits tells whether a callback about reservation uuid may be taken: it shares a read under
// way, or the reads waiting for the share leave room for one more.
func (s *Service) admits(uuid string) bool {
	if s.share == nil {
		return true
	}
	s.readMu.Lock()
	_, sharing := s.reads[uuid]
	s.readMu.Unlock()
	return sharing || s.queued.Load() < s.maxQueue
}
