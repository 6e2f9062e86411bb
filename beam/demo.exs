# make demo: BEAM starts a Python worker and sends four kinds of data both ways.
#
#   cd beam && TETHER_PYTHON=../.venv/bin/python mix run demo.exs
#
# Each item goes BEAM -> Python -> BEAM twice: through shared memory (the
# default above 1 MiB) and through the plain {packet, 4} port pipe.
python = System.get_env("TETHER_PYTHON", "python3")
mib = 1024 * 1024
start = fn threshold ->
  {:ok, w} = Tether.Worker.start_link(python: python, modules: ["tether.demo"], shm_threshold: threshold)
  w
end
shm = start.(mib)
pipe = start.(Bitwise.bsl(1, 40))

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
    back.data == tensor_data
  "echo", value, back -> back == value
  "to_arrow", _, back -> is_binary(back) and binary_part(back, 0, 4) == <<255, 255, 255, 255>>
end

IO.puts("tether demo: BEAM (Elixir #{System.version()}, OTP #{System.otp_release()}) <-> Python worker (#{python})\n")
started = System.monotonic_time(:millisecond)

for {label, fun, value} <- items do
  bytes = :erlang.external_size(value)
  {:ok, info} = Tether.Worker.call(shm, "tether.demo", "describe", [value], 120_000)
  # one warm-up call each, so both paths are measured warm
  {:ok, _} = Tether.Worker.call(shm, "tether.demo", fun, [value], 120_000)
  {t_shm, {:ok, back}} = :timer.tc(fn -> Tether.Worker.call(shm, "tether.demo", fun, [value], 120_000) end)
  {t_pipe, {:ok, back_pipe}} = :timer.tc(fn -> Tether.Worker.call(pipe, "tether.demo", fun, [value], 120_000) end)
  ok = check.(fun, value, back) and check.(fun, value, back_pipe)
  gbps = fn t -> 2 * bytes / (t / 1.0e6) / 1.0e9 end

  IO.puts("-- #{label}")
  framed = is_binary(value) and binary_part(value, 0, 4) == "TTHR"
  IO.puts("   sent as etf#{if framed, do: " (a tensor frame inside)", else: ""}; " <>
            "Python got a #{info["python_type"]}, zero-copy: #{info["zero_copy"]}; reply format: #{info["reply_format"]}")
  IO.puts("   #{Float.round(bytes / mib, 1)} MiB each way; round trip via shared memory " <>
            "#{Float.round(t_shm / 1000, 1)} ms (#{Float.round(gbps.(t_shm), 2)} GB/s), " <>
            "via the port pipe #{Float.round(t_pipe / 1000, 1)} ms (#{Float.round(gbps.(t_pipe), 2)} GB/s): " <>
            "#{Float.round(t_pipe / t_shm, 1)}x; round trip exact: #{ok}")
  ok || raise "#{label} did not come back intact"
end

IO.puts("\nOK in #{System.monotonic_time(:millisecond) - started} ms")
