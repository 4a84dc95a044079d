package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/nordpay/frontpay-worker/frontpay"
	"github.com/nordpay/frontpay-worker/internal/testworld"
	"github.com/nordpay/frontpay-worker/schemas"
)

// The worker against a NATS server that wants mutual TLS and authentication: everything it needs
// (certificates, nkeys, a creds file) is made at test time, so no testdata is kept.

// pki holds the files of a test PKI: a CA, a server certificate for 127.0.0.1 and a client
// certificate it signed, and a client certificate of another CA.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey, rogueCert, rogueKey string
}

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newPKI writes a fresh PKI into a temporary directory.
func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	ca := newCA(t, "frontpay test CA")
	rogue := newCA(t, "someone else's CA")
	p := pki{ca: filepath.Join(dir, "ca.pem")}
	writePEM(t, p.ca, "CERTIFICATE", ca.cert.Raw)
	p.serverCert, p.serverKey = ca.leaf(t, dir, "server", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = ca.leaf(t, dir, "client", x509.ExtKeyUsageClientAuth)
	p.rogueCert, p.rogueKey = rogue.leaf(t, dir, "rogue", x509.ExtKeyUsageClientAuth)
	return p
}

func newCA(t *testing.T, name string) issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return issuer{cert, key}
}

// leaf issues a certificate for 127.0.0.1 and localhost and writes it and its key.
func (ca issuer) leaf(t *testing.T, dir, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func serial(t *testing.T) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeFile writes b to a new file of the test and returns its path.
func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// userKey makes an nkey user and writes its seed to a file, as NATS_NKEY takes it.
func userKey(t *testing.T) (pub, seedFile string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ = kp.PublicKey()
	seed, _ := kp.Seed()
	return pub, writeFile(t, "user.nk", seed)
}

// startSecureNATS starts a JetStream server that wants TLS with a client certificate of the
// test CA, with auth set up by secure.
func startSecureNATS(t *testing.T, p pki, secure func(*server.Options)) *server.Server {
	t.Helper()
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p.serverCert, KeyFile: p.serverKey, CaFile: p.ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	opts := &server.Options{
		ServerName: "frontpay-tls-test", Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: t.TempDir(),
		TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 2, AuthTimeout: 2,
	}
	secure(opts)
	return testworld.Server(t, opts)
}

// secureConfig is startMain's configuration against a remote server.
func secureConfig(t *testing.T, apiURL string, nc NATSConfig) *Config {
	return &Config{
		NATSConfig: nc,
		APIURL:     apiURL, APIToken: sandboxToken, APITimeout: 2 * time.Second, MaxAttempts: 2,
		RetryInitial: time.Millisecond, RetryMax: 10 * time.Millisecond, HTTPAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		Concurrency: 4, AckWait: time.Second, PinnedTTL: 3 * time.Second, DrainTimeout: time.Second, LeaseMargin: 100 * time.Millisecond,
		Replicas: 1, WorkerName: "test", LogFormat: "text", LogLevel: "debug", CallbackShare: 10,
	}
}

// runSecure runs Main with cfg, giving up after limit; it returns the log and Run's error.
func runSecure(t *testing.T, cfg *Config, limit time.Duration) (*Main, *testworld.SyncBuffer, error) {
	t.Helper()
	logs := &testworld.SyncBuffer{}
	m := NewMain(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	err := m.Run(ctx)
	t.Cleanup(func() { _ = m.Close() })
	return m, logs, err
}

// secureCapture runs one capture end to end through the worker: the test's own connection
// (TLS and the options given) publishes it and reads its success.
func secureCapture(t *testing.T, url string, sb *testworld.API, opts ...nats.Option) {
	t.Helper()
	_, js := testworld.Connect(t, url, opts...) // the test's own connection
	uuid, line := sb.PaidReservation(t, sb.Client(t, sandboxToken))
	c := testworld.NewCommand(t, frontpay.ReservationCapture, map[string]any{
		"reservationUuid": uuid, "grandTotal": 40, "products": []any{map[string]any{"id": line, "amount": 40}},
	})
	testworld.Publish(t, js, c.Msg(""))
	id := c.ID
	var got *schemas.Event
	testworld.WaitFor(t, func() bool {
		for _, ev := range testworld.ReadStream(t, js, "FRONTPAY_RESULTS") {
			if ev.CausationID == id {
				got = &ev
				return true
			}
		}
		return false
	}, "the capture's result")
	if got.Type != "reservation.capture.succeeded" {
		t.Fatalf("capture over TLS: %s %s", got.Type, got.Data)
	}
}

// workerConn returns the server's view of the worker's connection.
func workerConn(t *testing.T, ns *server.Server) *server.ConnInfo {
	t.Helper()
	cz, err := ns.Connz(&server.ConnzOptions{Username: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cz.Conns {
		if c.Name == "frontpay-worker" {
			return c
		}
	}
	t.Fatalf("no connection named frontpay-worker among %d", len(cz.Conns))
	return nil
}

// TestTLSAndNkey runs the worker against a server that wants mutual TLS and an nkey user, with
// NATS_URL tls://…, NATS_TLS_CA/CERT/KEY and NATS_NKEY, and one capture end to end.
func TestTLSAndNkey(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	pub, seedFile := userKey(t)
	ns := startSecureNATS(t, p, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
	sb := newSandbox(t)
	cfg := secureConfig(t, sb.URL, NATSConfig{
		NATSURL: ns.ClientURL(), NATSNKey: seedFile, NATSTLSCA: p.ca, NATSTLSCert: p.clientCert, NATSTLSKey: p.clientKey,
	})
	if !strings.HasPrefix(cfg.NATSURL, "tls://") {
		t.Fatalf("server URL %s", cfg.NATSURL)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, logs, err := runSecure(t, cfg, 30*time.Second)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, logs)
	}
	c := workerConn(t, ns)
	if c.TLSVersion == "" || c.AuthorizedUser != pub {
		t.Fatalf("the worker's connection: TLS %q, user %q (want %s)", c.TLSVersion, c.AuthorizedUser, pub)
	}
	nkey, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	secureCapture(t, cfg.NATSURL, sb, nats.RootCAs(p.ca), nats.ClientCert(p.clientCert, p.clientKey), nkey)

	// nats.go upgrades a nats:// URL to TLS when the server requires it, with the same files.
	plain := *cfg
	plain.NATSURL = strings.Replace(cfg.NATSURL, "tls://", "nats://", 1)
	plain.DataDir = t.TempDir()
	if _, logs, err := runSecure(t, &plain, 30*time.Second); err != nil {
		t.Fatalf("Run with %s: %v\n%s", plain.NATSURL, err, logs)
	}
}

// operator is a NATS operator, its system account, an account with JetStream, and a user of that
// account: operator mode, as a creds file implies.
type operator struct {
	claims             *jwt.OperatorClaims
	systemPub, sysJWT  string
	accountPub, accJWT string
	creds              []byte // the user's creds file
}

func newOperator(t *testing.T) operator {
	t.Helper()
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "frontpay-test-operator"
	ojwt, err := oc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	if oc, err = jwt.DecodeOperatorClaims(ojwt); err != nil {
		t.Fatal(err)
	}

	skp, _ := nkeys.CreateAccount()
	spub, _ := skp.PublicKey()
	sc := jwt.NewAccountClaims(spub)
	sc.Name = "SYS"
	sjwt, err := sc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}

	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Name = "frontpay"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	ajwt, err := ac.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}

	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = "frontpay-worker"
	ujwt, err := uc.Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(ujwt, seed)
	if err != nil {
		t.Fatal(err)
	}
	return operator{claims: oc, systemPub: spub, sysJWT: sjwt, accountPub: apub, accJWT: ajwt, creds: creds}
}

// trust configures a server to trust the operator, with its system account and its account.
func (op operator) trust(t *testing.T) func(*server.Options) {
	return func(o *server.Options) {
		resolver := &server.MemAccResolver{}
		for pub, claim := range map[string]string{op.systemPub: op.sysJWT, op.accountPub: op.accJWT} {
			if err := resolver.Store(pub, claim); err != nil {
				t.Fatal(err)
			}
		}
		o.TrustedOperators = []*jwt.OperatorClaims{op.claims}
		o.AccountResolver = resolver
		o.SystemAccount = op.systemPub
	}
}

// TestTLSAndCreds runs the worker with NATS_CREDS (a user JWT and seed issued by an operator's
// account) over mutual TLS, one capture end to end.
func TestTLSAndCreds(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	op := newOperator(t)
	ns := startSecureNATS(t, p, op.trust(t))
	sb := newSandbox(t)
	credsFile := writeFile(t, "worker.creds", op.creds)
	cfg := secureConfig(t, sb.URL, NATSConfig{
		NATSURL: ns.ClientURL(), NATSCreds: credsFile, NATSTLSCA: p.ca, NATSTLSCert: p.clientCert, NATSTLSKey: p.clientKey,
	})
	_, logs, err := runSecure(t, cfg, 30*time.Second)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, logs)
	}
	if c := workerConn(t, ns); c.TLSVersion == "" || c.Account != op.accountPub {
		t.Fatalf("the worker's connection: TLS %q, account %q (want %s)", c.TLSVersion, c.Account, op.accountPub)
	}
	secureCapture(t, cfg.NATSURL, sb, nats.RootCAs(p.ca), nats.ClientCert(p.clientCert, p.clientKey), nats.UserCredentials(credsFile))
}

// startOutcome is what a worker with a bad NATS configuration does.
type startOutcome int

const (
	// failsFast: Run returns at once with an error naming the problem.
	failsFast startOutcome = iota
	// givesUp: the server refuses the authorization; nats.go closes the connection after the same
	// refusal twice, and Run, seeing it closed, returns of itself (well before its context ends)
	// with "set up streams: NATS connection closed: …", an error naming the problem.
	givesUp
	// waitsOut: the connection cannot be made, but Connect() uses RetryOnFailedConnect(true), so
	// nats.Connect returns a connection that retries for ever; Run then retries setting up the
	// streams until its context (or ensure's own 2 minutes) runs out, and fails with "set up
	// streams: … context canceled" (or deadline exceeded); the log (ReconnectErrHandler) names the
	// problem (nats.go reports the first attempt's error there; the retries, every ReconnectWait,
	// fail silently). The worker has a server of its own, whose closed connections are its
	// attempts: the test ends Run's context once two were refused (the first and a retry),
	// rather than after a fixed time.
	waitsOut
)

type refusal struct {
	name string
	edit func(*NATSConfig)
	want startOutcome
	// words: one of them must name the problem, in Run's error or in the log (givesUp: in the
	// error).
	words []string
}

// checkRefusals starts a worker with each edit of good and checks what it does. A worker that
// waits out gets a server of its own from serve, like the one of good. probe reports whether the
// server at url has no streams. The cases run at once, each subtest in a goroutine of its own
// rather than as a parallel subtest: they mostly wait (for a retry a ReconnectWait later, for a
// server's AuthTimeout), and go test runs only GOMAXPROCS parallel tests at a time.
func checkRefusals(t *testing.T, sb *testworld.API, good NATSConfig, cases []refusal, serve func(*testing.T) *server.Server,
	probe func(t *testing.T, url string) bool) {
	t.Helper()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, tc := range cases {
		wg.Go(func() {
			t.Run(tc.name, func(t *testing.T) { checkRefusal(t, sb, good, tc, serve, probe) })
		})
	}
}

// checkRefusal starts a worker with tc's edit of good and checks what it does (checkRefusals).
func checkRefusal(t *testing.T, sb *testworld.API, good NATSConfig, tc refusal, serve func(*testing.T) *server.Server,
	probe func(t *testing.T, url string) bool) {
	nc := good
	var own *server.Server
	if tc.want == waitsOut {
		own = serve(t)
		nc.NATSURL = own.ClientURL()
	}
	tc.edit(&nc)
	names := func(s string) bool {
		s = strings.ToLower(s)
		for _, w := range tc.words {
			if strings.Contains(s, strings.ToLower(w)) {
				return true
			}
		}
		return false
	}
	// A quick failure has 3 s; the others have Patience, and a worker waiting it out has
	// its context ended by the test.
	limit := testworld.Patience
	if tc.want == failsFast {
		limit = 3 * time.Second
	}
	logs := &testworld.SyncBuffer{}
	m := NewMain(secureConfig(t, sb.URL, nc), slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	var err error
	returned := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(returned)
		err = m.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-returned
		_ = m.Close()
	})
	hasReturned := func() bool {
		select {
		case <-returned:
			return true
		default:
			return false
		}
	}
	if tc.want == waitsOut {
		refused := func() int {
			cz, err := own.Connz(&server.ConnzOptions{State: server.ConnClosed})
			if err != nil {
				return 0
			}
			return len(cz.Conns)
		}
		testworld.WaitFor(t, func() bool { return hasReturned() || refused() >= 2 && names(logs.String()) },
			fmt.Sprintf("Run to return, or two attempts refused and the log naming one of %q", tc.words))
		cancel()
		select {
		case <-returned:
		case <-time.After(5 * time.Second):
			t.Fatalf("Run goes on 5 s after its context ended:\n%s", logs)
		}
	}
	<-returned
	took := time.Since(start)
	if err == nil || m.ready.Load() {
		t.Fatalf("the worker started (Run: %v)", err)
	}
	named := names(err.Error() + "\n" + logs.String())
	switch tc.want {
	case failsFast:
		if took > 2*time.Second || !named {
			t.Errorf("Run took %s and said %q; want a quick error naming one of %q", took, err, tc.words)
		}
	case givesUp:
		if ctx.Err() != nil || !names(err.Error()) {
			t.Errorf("Run took %s (its context: %v) and said %q; want it to give up of itself, naming one of %q:\n%s",
				took.Round(time.Millisecond), ctx.Err(), err, tc.words, logs)
		}
		if !probe(t, nc.NATSURL) {
			t.Errorf("the refused worker set up streams")
		}
	case waitsOut:
		if !probe(t, nc.NATSURL) {
			t.Errorf("the refused worker set up streams")
		}
		if !named {
			t.Errorf("Run waited %s and said only %q; the log names none of %q:\n%s",
				took.Round(time.Millisecond), err, tc.words, logs)
		}
	}
}

// TestTLSRefusals starts the worker with a TLS or nkey setting missing or wrong: it must not
// start, and it should say why.
func TestTLSRefusals(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	pub, seedFile := userKey(t)
	_, otherSeed := userKey(t)
	akp, _ := nkeys.CreateAccount()
	accountSeed, _ := akp.Seed()
	serve := func(t *testing.T) *server.Server {
		return startSecureNATS(t, p, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
	}
	ns := serve(t)
	sb := newSandbox(t)
	good := NATSConfig{NATSURL: ns.ClientURL(), NATSNKey: seedFile, NATSTLSCA: p.ca, NATSTLSCert: p.clientCert, NATSTLSKey: p.clientKey}
	missing := func(name string) string { return filepath.Join(t.TempDir(), name) }

	checkRefusals(t, sb, good, []refusal{
		{"nkey file not a seed", func(c *NATSConfig) { c.NATSNKey = writeFile(t, "junk.nk", []byte("not a seed\n")) }, failsFast, []string{"NATS_NKEY"}},
		{"nkey of an account", func(c *NATSConfig) { c.NATSNKey = writeFile(t, "account.nk", accountSeed) }, failsFast, []string{"NATS_NKEY"}},
		{"nkey file missing", func(c *NATSConfig) { c.NATSNKey = missing("none.nk") }, failsFast, []string{"NATS_NKEY"}},
		{"CA file missing", func(c *NATSConfig) { c.NATSTLSCA = missing("none-ca.pem") }, failsFast, []string{"none-ca.pem"}},
		{"client certificate file missing", func(c *NATSConfig) { c.NATSTLSCert = missing("none-cert.pem") }, failsFast, []string{"none-cert.pem"}},
		{"no client certificate", func(c *NATSConfig) { c.NATSTLSCert, c.NATSTLSKey = "", "" }, waitsOut, []string{"certificate", "tls"}},
		{"client certificate of another CA", func(c *NATSConfig) { c.NATSTLSCert, c.NATSTLSKey = p.rogueCert, p.rogueKey }, waitsOut, []string{"certificate", "tls"}},
		{"server CA not trusted", func(c *NATSConfig) { c.NATSTLSCA = "" }, waitsOut, []string{"certificate", "x509"}},
		{"wrong nkey", func(c *NATSConfig) { c.NATSNKey = otherSeed }, givesUp, []string{"authorization"}},
		{"no nkey", func(c *NATSConfig) { c.NATSNKey = "" }, givesUp, []string{"authorization"}},
	}, serve, noStreams(nats.RootCAs(p.ca), nats.ClientCert(p.clientCert, p.clientKey), nkeyOption(t, seedFile)))
}

// TestCredsRefusals starts the worker with a creds file that is missing, unreadable or of a user
// the server does not know.
func TestCredsRefusals(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	op, stranger := newOperator(t), newOperator(t)
	serve := func(t *testing.T) *server.Server { return startSecureNATS(t, p, op.trust(t)) }
	ns := serve(t)
	sb := newSandbox(t)
	credsFile := writeFile(t, "worker.creds", op.creds)
	good := NATSConfig{NATSURL: ns.ClientURL(), NATSCreds: credsFile, NATSTLSCA: p.ca, NATSTLSCert: p.clientCert, NATSTLSKey: p.clientKey}
	checkRefusals(t, sb, good, []refusal{
		{"creds file missing", func(c *NATSConfig) { c.NATSCreds = filepath.Join(t.TempDir(), "none.creds") }, failsFast, []string{"none.creds"}},
		{"creds file not creds", func(c *NATSConfig) { c.NATSCreds = writeFile(t, "junk.creds", []byte("junk\n")) }, waitsOut, []string{"creds", "jwt", "nkey"}},
		{"creds of another operator", func(c *NATSConfig) { c.NATSCreds = writeFile(t, "stranger.creds", stranger.creds) }, givesUp, []string{"authorization"}},
	}, serve, noStreams(nats.RootCAs(p.ca), nats.ClientCert(p.clientCert, p.clientKey), nats.UserCredentials(credsFile)))
}

func nkeyOption(t *testing.T, seedFile string) nats.Option {
	t.Helper()
	o, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// noStreams returns a probe, through a connection of its own with opts, that the worker's command
// stream does not exist on the server at url: a refused worker set nothing up.
func noStreams(opts ...nats.Option) func(t *testing.T, url string) bool {
	return func(t *testing.T, url string) bool {
		nc, err := nats.Connect(url, opts...)
		if err != nil {
			t.Fatalf("the probe's connection: %v", err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		_, err = js.Stream(t.Context(), "FRONTPAY_COMMANDS")
		return errors.Is(err, jetstream.ErrStreamNotFound)
	}
}
