//go:build !linux

package main

import (
	"errors"
	"syscall"
)

// errNotLinux says what is missing: the bench reads /proc and sets CPU
// affinity, which only Linux has.
var errNotLinux = errors.New("bench: measuring processes needs Linux /proc")

const clockTicks = 100

type procUsage struct{ cpuTicks, rssKB, anonKB, fds int64 }

func readUsage(int) (procUsage, error) { return procUsage{}, errNotLinux }
func kernelKB() (int64, error)         { return 0, errNotLinux }
func shrinkSlabs()                     {}
func raiseFDLimit() (uint64, error)    { return 0, errNotLinux }
func pinSelf([]int) error              { return errNotLinux }
func cpuModel() string                 { return "unknown" }
func kernelRelease() string            { return "unknown" }
func childAttr() *syscall.SysProcAttr  { return &syscall.SysProcAttr{Setpgid: true} }

func keyKB(string, string) (int64, error) { return 0, errNotLinux }
func reniceSelf(int) error                { return errNotLinux }
func cpuTotals() (int64, int64, error)    { return 0, 0, errNotLinux }
