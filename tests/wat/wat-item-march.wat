;; Spends almost nothing per item but calls regua.item(0), item(1), … without end, past the
;; batch's last customer.
  (func (export "regua_metadata") (result i64) (call $metadata))
  (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64)
    (local $i i32)
    (loop $again
      (call $item (local.get $i))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $again))
    (call $answer (local.get 2)))
