module github.com/nordpay/frontpay-worker

go 1.26.0
