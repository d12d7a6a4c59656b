;; The floor of the stage contract in wasmtime: a stage that hands every
;; event back as it came, with the least a guest can do. Its allocator
;; bumps a pointer (reset after each call), and its `process` writes one
;; `ok([event])` per input that points at the input's own record, so no
;; byte is copied inside the sandbox. What `chain` measures with it is
;; what the host spends per event: lowering the batch into the guest
;; (with the `cabi_realloc` calls the canonical ABI makes for every string
;; and list), the call, lifting the results, and `post-return`.
(component
  (type $types-type
    (instance
      (type (tuple string string))
      (type (list 0))
      (type (list u8))
      (type (record (field "subject" string) (field "headers" 1) (field "payload" 2)))
      (export "event" (type (eq 3)))
      (type (variant (case "invalid" string) (case "retry" string)))
      (export "stage-error" (type (eq 5)))))
  (import "weir:stage/types@0.1.0" (instance $types (type $types-type)))
  (alias export $types "event" (type $types-event))
  (import "event" (type $event (eq $types-event)))
  (alias export $types "stage-error" (type $types-stage-error))
  (import "stage-error" (type $stage-error (eq $types-stage-error)))

  (core module $m
    (memory (export "memory") 1)
    ;; Everything a call allocates lies above this, and is dropped after it.
    (global $base i32 (i32.const 1024))
    (global $heap (mut i32) (i32.const 1024))

    (func $realloc (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
      (local $p i32) (local $end i32) (local $have i32)
      ;; The host only ever asks for fresh blocks here (old = 0).
      (local.set $p (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $p) (local.get $size)))
      (local.set $have (i32.shl (memory.size) (i32.const 16)))
      (if (i32.gt_u (local.get $end) (local.get $have))
        (then
          (if (i32.eq
                (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535)) (i32.const 16)))
                (i32.const -1))
            (then unreachable))))
      (global.set $heap (local.get $end))
      (local.get $p))

    ;; init: result<_, string> in memory; all zero is `ok`.
    (func (export "init") (param i32 i32) (result i32)
      (local $r i32)
      (local.set $r (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 12)))
      (i32.store (local.get $r) (i32.const 0))
      (local.get $r))

    ;; process: list<result<list<event>, stage-error>>; a result is 16 bytes
    ;; (tag, then the list's pointer and length at 4 and 8), an event 24.
    (func (export "process") (param $events i32) (param $n i32) (result i32)
      (local $results i32) (local $out i32) (local $i i32) (local $ret i32)
      (local.set $results (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.shl (local.get $n) (i32.const 4))))
      (local.set $out (local.get $results))
      (block $done
        (loop $each
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (i32.store8 (local.get $out) (i32.const 0))
          (i32.store offset=4 (local.get $out) (i32.add (local.get $events) (i32.mul (local.get $i) (i32.const 24))))
          (i32.store offset=8 (local.get $out) (i32.const 1))
          (local.set $out (i32.add (local.get $out) (i32.const 16)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $each)))
      (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 8)))
      (i32.store (local.get $ret) (local.get $results))
      (i32.store offset=4 (local.get $ret) (local.get $n))
      (local.get $ret))

    (func (export "cabi_post_process") (param i32)
      (global.set $heap (global.get $base))))

  (core instance $i (instantiate $m))
  (alias core export $i "memory" (core memory $memory))
  (alias core export $i "cabi_realloc" (core func $realloc))

  (type $init-result (result (error string)))
  (func (export "init") (param "config" string) (result $init-result)
    (canon lift (core func $i "init") (memory $memory) (realloc $realloc)))

  (type $events (list $event))
  (type $result (result $events (error $stage-error)))
  (type $results (list $result))
  (func (export "process") (param "events" $events) (result $results)
    (canon lift (core func $i "process") (memory $memory) (realloc $realloc)
      (post-return (core func $i "cabi_post_process")))))
