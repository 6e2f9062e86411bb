# make demo: a supervised Tether.Pool of Python workers, and four kinds of data both ways.
#
#   cd beam && TETHER_PYTHON=../.venv/bin/python mix run demo.exs
#
# Each item goes BEAM -> Python -> BEAM twice: through a pool member, which
# uses shared memory above 1 MiB, and through a worker kept to the plain
# {packet, 4} pipe. Then the pool runs small calls from eight processes at once.
import Bitwise

python = System.get_env("TETHER_PYTHON", "python3")
mib = 1024 * 1024

children = [
  {Tether.Pool, name: Demo.Pool, size: 2, python: python, modules: ["tether.demo"]},
  # Everything through the pipe, nothing through shared memory (a 256 MiB
  # tensor is over the pipe's default 256 MiB limit for one message).
  {Tether.Worker,
   name: Demo.Pipe, python: python, modules: ["tether.demo"], shm_threshold: bsl(1, 40), max_message: bsl(1, 30)}
]

{started_us, {:ok, sup}} = :timer.tc(fn -> Supervisor.start_link(children, strategy: :one_for_one) end)
%{python: py_version, tether: tether_version} = Tether.Worker.info(Demo.Pipe)

rows = for i <- 1..100_000, do: %{id: i, name: "item#{i}", price: i * 1.5, tags: [:alpha, :beta], pos: {i, i + 1}}
tensor_data = :binary.copy(<<1.5::float-32-native>>, 64 * mib)
tensor = Tether.tensor(tensor_data, {:f, 32}, {8192, 8192})
blob = :crypto.strong_rand_bytes(64 * mib)
nested = %{
  pid: self(),
  at: DateTime.utc_now(),
  set: MapSet.new([:a, :b]),
  status: {:ok, [1, :two, "three", 4.5]},
  nested: %{deep: [%{x: 1}, {:tuple, nil}]}
}

items = [
  {"100,000-element list of maps", "to_arrow", rows},
  {"256 MiB {:f, 32} tensor", "echo", tensor},
  {"64 MiB binary", "echo", blob},
  {"nested term (atoms, tuples, pid, DateTime, MapSet)", "echo", nested}
]

check = fn
  "echo", value, back when is_binary(value) and binary_part(value, 0, 4) == "TTHR" ->
    back.data == tensor_data and back.shape == {8192, 8192} and back.order == "C"

  "echo", value, back ->
    back == value

  "to_arrow", _, back ->
    is_binary(back) and binary_part(back, 0, 4) == <<255, 255, 255, 255>>
end

IO.puts("tether demo: BEAM (Elixir #{System.version()}, OTP #{System.otp_release()}) <-> Python #{py_version} (#{python})")
IO.puts("tether #{tether_version}; a supervisor started a pool of 2 workers and a pipe-only worker in #{div(started_us, 1000)} ms\n")
started = System.monotonic_time(:millisecond)

for {label, fun, value} <- items do
  bytes = :erlang.external_size(value)
  {:ok, info} = Tether.Pool.call(Demo.Pool, "tether.demo", "describe", [value], 120_000)
  # one warm-up call each, so both paths are measured warm
  {:ok, _} = Tether.Pool.call(Demo.Pool, "tether.demo", fun, [value], 120_000)
  {t_shm, {:ok, back}} = :timer.tc(fn -> Tether.Pool.call(Demo.Pool, "tether.demo", fun, [value], 120_000) end)
  {t_pipe, {:ok, back_pipe}} = :timer.tc(fn -> Tether.Worker.call(Demo.Pipe, "tether.demo", fun, [value], 120_000) end)
  ok = check.(fun, value, back) and check.(fun, value, back_pipe)
  gbps = fn t -> 2 * bytes / (t / 1.0e6) / 1.0e9 end

  IO.puts("-- #{label}")
  framed = is_binary(value) and binary_part(value, 0, 4) == "TTHR"

  IO.puts(
    "   sent as etf#{if framed, do: " (a tensor frame inside)", else: ""}; " <>
      "Python got a #{info["python_type"]}, zero-copy: #{info["zero_copy"]}; reply format: #{info["reply_format"]}"
  )

  IO.puts(
    "   #{Float.round(bytes / mib, 1)} MiB each way; round trip via shared memory " <>
      "#{Float.round(t_shm / 1000, 1)} ms (#{Float.round(gbps.(t_shm), 2)} GB/s), " <>
      "via the port pipe #{Float.round(t_pipe / 1000, 1)} ms (#{Float.round(gbps.(t_pipe), 2)} GB/s): " <>
      "#{Float.round(t_pipe / t_shm, 1)}x; round trip exact: #{ok}"
  )

  ok || raise "#{label} did not come back intact"
end

# Small calls from eight processes: the pool's two members answer at once.
small = %{id: 1, name: "small", price: 9.5, tags: [:a, :b], ok: true}

rate = fn call ->
  run = fn n -> 1..8 |> Enum.map(fn _ -> Task.async(fn -> for _ <- 1..n, do: {:ok, _} = call.() end) end) |> Task.await_many(60_000) end
  run.(50)
  {us, _} = :timer.tc(fn -> run.(500) end)
  round(8 * 500 / (us / 1.0e6))
end

pool_rate = rate.(fn -> Tether.Pool.call(Demo.Pool, "tether.demo", "echo", [small]) end)
one_rate = rate.(fn -> Tether.Worker.call(Demo.Pipe, "tether.demo", "echo", [small]) end)
IO.puts("-- small calls from 8 processes")
IO.puts("   pool of 2: #{pool_rate} calls/s; one worker: #{one_rate} calls/s (#{Float.round(pool_rate / one_rate, 2)}x)")
IO.puts("   pool: #{inspect(Map.take(Tether.Pool.status(Demo.Pool), [:size, :idle, :busy, :queued]))}")

Supervisor.stop(sup)
IO.puts("\nOK in #{System.monotonic_time(:millisecond) - started} ms")
