//go:build !race

package config

// raceDetector is true in a -race build, where walking tens of MB byte
// by byte costs minutes.
const raceDetector = false
