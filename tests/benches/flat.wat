;; For orientation only, not weir's contract: the floor of a contract that
;; would pass a batch as one buffer each way, `process: func(batch:
;; list<u8>) -> list<u8>`. Like `floor.wat` it does nothing: it hands the
;; buffer it got back as its result. The host copies the batch in with one
;; `cabi_realloc` call and the result out with one copy.
(component
  (core module $m
    (memory (export "memory") 1)
    (global $base i32 (i32.const 1024))
    (global $heap (mut i32) (i32.const 1024))

    (func $realloc (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
      (local $p i32) (local $end i32) (local $have i32)
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

    (func (export "process") (param $batch i32) (param $len i32) (result i32)
      (local $ret i32)
      (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 8)))
      (i32.store (local.get $ret) (local.get $batch))
      (i32.store offset=4 (local.get $ret) (local.get $len))
      (local.get $ret))

    (func (export "cabi_post_process") (param i32)
      (global.set $heap (global.get $base))))

  (core instance $i (instantiate $m))
  (alias core export $i "memory" (core memory $memory))
  (alias core export $i "cabi_realloc" (core func $realloc))
  (type $bytes (list u8))
  (func (export "process") (param "batch" $bytes) (result $bytes)
    (canon lift (core func $i "process") (memory $memory) (realloc $realloc)
      (post-return (core func $i "cabi_post_process")))))
