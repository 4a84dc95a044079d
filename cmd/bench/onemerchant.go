package main

import (
	"context"
	"fmt"
	"log"
	"syscall"
	"time"

	"github.com/nordpay/frontpay-worker/consumer"
	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/frontpay/sandbox"
	"github.com/nordpay/frontpay-worker/schemas"
)

// oneMerchantPrefix is FRONTPAY_SUBJECT_PREFIX of the runs with a merchants file (the file
// requires one). Not "frontpay.": the world's one-merchant streams, without prefix, take the dead
// letters' frontpay.deadletter.> already, which would overlap frontpay.*.<op>.requested.
const oneMerchantPrefix = "shops."

// oneMerchant measures what FRONTPAY_MERCHANTS_FILE costs a command: the throughput scenario's
// full load (cfg.n captures at zero API latency, published at once) on one replica run by
// app.Main as cmd/frontpay-worker runs it, with a merchants file of one merchant and
// without a file (the one merchant of the environment), runs of each alternating, medians
// compared. Both spend the same token's account: run i of each captures 40 of the 100 NOK of the
// same reservations.
func oneMerchant(ctx context.Context, cfg *config) ([]Row, error) {
	const sc = "onemerchant"
	w, err := newWorld(sandbox.Options{RateLimit: -1, Seed: 9})
	if err != nil {
		return nil, err
	}
	defer w.close()
	fileTopo := consumer.Topology{Prefix: oneMerchantPrefix, Merchants: true, AckWait: w.topo.AckWait}
	if _, err := fileTopo.Ensure(ctx, w.js); err != nil {
		return nil, err
	}
	file, err := writeMerchantsFile(w.dir, "onemerchant", []fileMerchant{{ID: "shop1", Token: token}})
	if err != nil {
		return nil, err
	}
	t := time.Now()
	sets := make([][]reservation, cfg.oneMerchantRuns)
	for i := range sets {
		if sets[i], err = setupReservations(ctx, w.api, w.sb, cfg.n, true); err != nil {
			return nil, err
		}
	}
	log.Printf("%s: set up %d paid reservations in %s", sc, cfg.oneMerchantRuns*cfg.n, time.Since(t).Round(time.Millisecond))

	type mode struct {
		name    string
		topo    consumer.Topology
		file    string
		subject string
		results []string
		rates   []float64
		ops     []float64 // JetStream operations per command
		cpu     []float64 // CPU time of this process per command, µs
		failed  int
		reasons string
	}
	modes := []*mode{
		{name: "no file", topo: w.topo, subject: schemas.CommandSubject("", frontpay.ReservationCapture), results: workerResults},
		{name: "a file of one merchant", topo: fileTopo, file: file,
			subject: schemas.CommandSubject(fileTopo.SubjectPrefix("shop1"), frontpay.ReservationCapture),
			results: []string{oneMerchantPrefix + "*.*.*.succeeded", oneMerchantPrefix + "*.*.*.failed"}},
	}
	for i := range 2 * cfg.oneMerchantRuns {
		m := modes[i%2]
		cmds, err := captureCommands(sets[i/2], m.subject)
		if err != nil {
			return nil, err
		}
		rw, err := w.startWorker(ctx, workerOptions{Topology: m.topo, File: m.file,
			Concurrency: cfg.concurrency, APITimeout: cfg.apiTimeout, DrainTimeout: drainTimeout})
		if err != nil {
			return nil, err
		}
		inBefore, cpuBefore := w.inMsgs(), cpuTime()
		p, err := runPhase(ctx, w, cmds, 0, cfg.phaseTimeout, m.results...)
		ops := opsPerCommand(w.inMsgs()-inBefore, len(cmds))
		cpu := float64(cpuTime()-cpuBefore) / float64(time.Microsecond) / float64(len(cmds))
		_ = rw.Close()
		if err != nil {
			return nil, fmt.Errorf("%s, run %d: %w", m.name, i/2+1, err)
		}
		m.rates, m.ops, m.cpu = append(m.rates, p.rate), append(m.ops, ops), append(m.cpu, cpu)
		m.failed += p.failed
		m.reasons += p.reasons
		log.Printf("%s: run %d (%s): %d captures, %.0f/s, %.2f JetStream operations and %.0f µs of CPU each", sc, i+1, m.name, p.answered, p.rate, ops, cpu)
	}
	without, with := median(modes[0].rates), median(modes[1].rates)
	opsWithout, opsWith := median(modes[0].ops), median(modes[1].ops)
	cpuWithout, cpuWith := median(modes[0].cpu), median(modes[1].cpu)
	share := with / without * 100
	rows := []Row{
		info(sc, "no file (one merchant of the environment), median", without, "commands/s", fmt.Sprintf("%.0f/s", without)),
		info(sc, "FRONTPAY_MERCHANTS_FILE of one merchant, median", with, "commands/s", fmt.Sprintf("%.0f/s", with)),
		atLeast(sc, "file of one merchant / no file", share, "%", fmt.Sprintf("%.1f%%", share), 90, "≥ 90%"),
		info(sc, "JetStream operations per command (no file / file), median", opsWith, "operations",
			fmt.Sprintf("%.2f / %.2f", opsWithout, opsWith)),
		info(sc, "CPU per command (no file / file), median", cpuWith, "µs",
			fmt.Sprintf("%.0f µs / %.0f µs", cpuWithout, cpuWith)),
		atMost(sc, "failed results (no file / file)", float64(modes[0].failed+modes[1].failed), "results",
			fmt.Sprintf("%d / %d", modes[0].failed, modes[1].failed), 0, "0"),
	}
	rows[0].Note = fmt.Sprintf("%d runs of %d captures each at zero API latency, published at once, alternating with the runs with a file; "+
		"one replica run by app.Main as cmd/frontpay-worker runs it (history poll off), concurrency %d", cfg.oneMerchantRuns, cfg.n, cfg.concurrency)
	rows[1].Note = fmt.Sprintf("runs: %s; without: %s", rateList(modes[1].rates), rateList(modes[0].rates))
	rows[4].Note = "user and system time of the benchmark's process (the NATS server, the replica, the sandbox, the publisher and the collector) from the first publish to the last result, per command: less sensitive than the rate to other processes on the machine"
	if r := modes[0].reasons + " " + modes[1].reasons; modes[0].failed+modes[1].failed > 0 {
		rows[5].Note = r
	}
	return rows, nil
}

// rateList renders rates as "7012/s, 6890/s".
func rateList(v []float64) string {
	s := ""
	for i, r := range v {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%.0f/s", r)
	}
	return s
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
