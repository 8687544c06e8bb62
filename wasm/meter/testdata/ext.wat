;; Instructions from proposals wazero supports behind experimental flags:
;; tail calls (return_call, return_call_indirect: function indices that
;; Instrument renumbers) and threads (atomics with their immediates).
;; Build: go generate (see doc.go).
(module
  (type $i2i (func (param i32) (result i32)))
  (import "env" "add" (func $add (param i32 i32) (result i32)))
  (memory 1 1 shared)
  (table 2 funcref)
  (elem (i32.const 0) $even $odd)

  ;; Mutual recursion in tail position: a million deep without growing
  ;; the stack, and without loops, so only function-entry metering sees it.
  (func $even (export "even") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 1))
      (else (return_call $odd (i32.sub (local.get $n) (i32.const 1))))))
  (func $odd (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 0))
      (else (return_call_indirect (type $i2i) (i32.sub (local.get $n) (i32.const 1)) (i32.const 0)))))

  (func (export "atomics") (param $x i32) (result i32)
    (i32.atomic.store offset=8 (i32.const 0) (local.get $x))
    (drop (i32.atomic.rmw.add offset=8 (i32.const 0) (i32.const 5)))
    (atomic.fence)
    (drop (memory.atomic.notify (i32.const 8) (i32.const 1)))
    (drop (i64.atomic.rmw.cmpxchg (i32.const 16) (i64.const 0) (i64.const 7)))
    (call $add (i32.atomic.load offset=8 (i32.const 0)) (i32.wrap_i64 (i64.atomic.load (i32.const 16)))))

  ;; Never returns: tail-recursive spin.
  (func $spin (export "spin") (return_call $spin))
)
