# assert_receive waits 100 ms by default; on a shared 2-core CI box an event sent by
# another process (a worker, a pool, a DOWN) can take longer to be scheduled. A message
# that arrives in time is matched at once, so passing tests are not slowed.
ExUnit.start(assert_receive_timeout: 2_000)
