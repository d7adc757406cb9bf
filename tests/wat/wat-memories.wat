;; Twenty more memories of 64 MiB each beside the exported one.
  (memory 1024) (memory 1024) (memory 1024) (memory 1024) (memory 1024)
  (memory 1024) (memory 1024) (memory 1024) (memory 1024) (memory 1024)
  (memory 1024) (memory 1024) (memory 1024) (memory 1024) (memory 1024)
  (memory 1024) (memory 1024) (memory 1024) (memory 1024) (memory 1024)
  (func (export "regua_metadata") (result i64) (call $metadata))
  (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64) (call $answer (local.get 2)))
