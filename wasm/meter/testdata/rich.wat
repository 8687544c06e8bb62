;; A module that uses every part of the format Instrument rewrites or must
;; skip: function and global imports, element segments in all encodings,
;; ref.func, call_indirect, a start function, multi-value blocks and loops
;; with parameters, bulk memory and table instructions, sign extension,
;; non-trapping float-to-int, SIMD with every kind of immediate, typed
;; select, and a name section. Build: go generate (see doc.go).
(module
  (type $i2i (func (param i32) (result i32)))
  (type $pair (func (param i32 i32) (result i32 i32)))
  (import "env" "add" (func $add (param i32 i32) (result i32)))
  (import "env" "log" (func $log (param i32)))
  (import "genv" "base" (global $base i32))

  (memory (export "memory") 1)
  (table $t (export "table") 8 16 funcref)
  (table $t2 4 funcref)

  (global $counter (export "counter") (mut i32) (i32.const 0))
  (global $fref (mut funcref) (ref.func $double))
  (global $derived i32 (global.get $base))

  (data (i32.const 16) "hello, instrumented world")
  (data $passive "\01\02\03\04\05\06\07\08")

  (elem (i32.const 0) $double $square)
  (elem (table $t) (i32.const 2) func $inc)
  (elem $pelem func $double $inc)
  (elem declare func $neg)
  (elem (i32.const 4) funcref (ref.func $square) (ref.null func))
  (elem $pexpr funcref (ref.func $neg) (ref.null func))
  (elem (table $t2) (i32.const 0) func $inc)
  (elem (table $t2) (i32.const 1) funcref (ref.func $double) (ref.null func))
  (elem declare funcref (ref.func $square) (ref.null func))

  (start $init)

  (func $init
    (global.set $counter (i32.add (global.get $counter) (i32.const 100))))

  (func $double (type $i2i) (i32.mul (local.get 0) (i32.const 2)))
  (func $square (type $i2i) (i32.mul (local.get 0) (local.get 0)))
  (func $inc (type $i2i) (i32.add (local.get 0) (i32.const 1)))
  (func $neg (type $i2i) (i32.sub (i32.const 0) (local.get 0)))

  ;; A loop that calls an import each iteration.
  (func (export "sum") (param $n i32) (result i32) (local $i i32) (local $acc i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $acc (call $add (local.get $acc) (local.get $i)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $log (local.get $acc))
    (i32.add (local.get $acc) (global.get $derived)))

  (func $fact (export "fact") (param i64) (result i64)
    (if (result i64) (i64.le_u (local.get 0) (i64.const 1))
      (then (i64.const 1))
      (else (i64.mul (local.get 0) (call $fact (i64.sub (local.get 0) (i64.const 1)))))))

  (func (export "indirect") (param $slot i32) (param $x i32) (result i32)
    (call_indirect $t (type $i2i) (local.get $x) (local.get $slot)))

  (func (export "reffunc") (param $x i32) (result i32)
    (table.set $t (i32.const 7) (ref.func $neg))
    (i32.add
      (call_indirect $t (type $i2i) (local.get $x) (i32.const 7))
      (call_indirect $t (type $i2i) (local.get $x) (i32.const 4))))

  (func (export "funcref_global") (param $x i32) (result i32)
    (table.set $t (i32.const 6) (global.get $fref))
    (call_indirect $t (type $i2i) (local.get $x) (i32.const 6)))

  ;; Multi-value: a loop with parameters (the metering code runs with the
  ;; loop's inputs on the stack) and a block with a type-index block type.
  ;; Returns n(n+1)/2.
  (func (export "multi") (param $n i32) (result i32) (local $c i32) (local $acc i32)
    (local.get $n)
    (i32.const 0)
    (loop $l (type $pair) (param i32 i32) (result i32 i32)
      (local.set $acc)
      (local.set $c)
      (i32.sub (local.get $c) (i32.const 1))
      (i32.add (local.get $acc) (local.get $c))
      (br_if $l (i32.gt_s (local.get $c) (i32.const 1))))
    (block (type $pair) (param i32 i32) (result i32 i32))
    (i32.add))

  (func (export "table2") (param $slot i32) (param $x i32) (result i32)
    (call_indirect $t2 (type $i2i) (local.get $x) (local.get $slot)))

  (func (export "brtable") (param $i i32) (result i32)
    (block $d
      (block $c
        (block $b
          (block $a
            (br_table $a $b $c $d (local.get $i)))
          (return (i32.const 10)))
        (return (i32.const 20)))
      (return (i32.const 30)))
    (i32.const 40))

  (func (export "bulk") (result i32)
    (memory.fill (i32.const 100) (i32.const 7) (i32.const 16))
    (memory.copy (i32.const 200) (i32.const 16) (i32.const 5))
    (memory.init $passive (i32.const 300) (i32.const 2) (i32.const 4))
    (data.drop $passive)
    (table.init $t $pelem (i32.const 5) (i32.const 0) (i32.const 2))
    (elem.drop $pelem)
    (table.copy (i32.const 3) (i32.const 5) (i32.const 1))
    (drop (table.grow $t (ref.null func) (i32.const 1)))
    (table.fill $t (i32.const 8) (ref.null func) (i32.const 1))
    (i32.add
      (i32.add (i32.load8_u (i32.const 110)) (i32.load8_u (i32.const 204)))
      (i32.add
        (i32.add (i32.load8_u (i32.const 301)) (table.size $t))
        (call_indirect $t (type $i2i) (i32.const 10) (i32.const 3)))))

  (func (export "numeric") (param $x i32) (param $f f32) (result i64)
    (i64.add
      (i64.add
        (i64.extend_i32_s (i32.extend8_s (local.get $x)))
        (i64.extend16_s (i64.const 0x18000)))
      (i64.add
        (i64.extend_i32_s (i32.trunc_sat_f32_s (local.get $f)))
        (i64.trunc_sat_f64_u (f64.const 1e30)))))

  (func (export "simd") (param $x i32) (result i32) (local $v v128)
    (local.set $v (i32x4.splat (local.get $x)))
    (local.set $v (i32x4.add (local.get $v) (v128.const i32x4 1 2 3 4)))
    (local.set $v (i8x16.shuffle 4 5 6 7 0 1 2 3 12 13 14 15 8 9 10 11
                    (local.get $v) (local.get $v)))
    (local.set $v (i32x4.replace_lane 3 (local.get $v) (i32.const 1000)))
    (v128.store offset=16 align=4 (i32.const 512) (local.get $v))
    (local.set $v (v128.load8_lane 0 (i32.const 516) (v128.load (i32.const 528))))
    (v128.store32_lane 1 (i32.const 600) (local.get $v))
    (local.set $v (i64x2.add (local.get $v) (v128.load32_zero (i32.const 600))))
    (i32.add
      (i32.add (i32x4.extract_lane 0 (local.get $v)) (i32x4.extract_lane 1 (local.get $v)))
      (i32.add (i8x16.extract_lane_u 2 (local.get $v))
               (i32.add (i32x4.extract_lane 3 (local.get $v)) (i32.load (i32.const 600))))))

  (func (export "select_ref") (param $c i32) (result i32)
    (i32.add
      (select (result i32) (i32.const 5) (i32.const 9) (local.get $c))
      (i32.add
        (ref.is_null (ref.null extern))
        (ref.is_null (select (result funcref) (ref.func $neg) (ref.null func) (local.get $c))))))

  (func (export "counter_value") (result i32) (global.get $counter))
)
