package api

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// pacer sleeps until a request is due on a timerfd, which Go's network
// poller waits on: the sleeping goroutine holds no thread and no P, and it
// wakes within microseconds. Go's own timers wake a process with nothing
// else to run on a millisecond tick (time.Sleep(400µs) overslept by about
// 700 µs on the test machine), which sent the load in bursts and made
// every request late by hundreds of microseconds; a kernel sleep on the
// goroutine's thread held a P meanwhile and stalled the rest.
type pacer struct {
	timer *os.File
}

func newPacer() (*pacer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &pacer{timer: os.NewFile(uintptr(fd), "timerfd")}, nil
}

func (p *pacer) sleepUntil(t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(int(p.timer.Fd()), 0, &spec, nil); err != nil {
		return err
	}
	var expirations [8]byte
	_, err := p.timer.Read(expirations[:])
	return err
}

func (p *pacer) Close() error { return p.timer.Close() }
