defmodule Tether.AdversarialTest do
  # Malformed messages from Python (docs/format.md §8), the BEAM's side: every decoder answers
  # {:ok, _} or {:error, _}, creates no atom, and a worker that receives garbage on its port
  # stays up. Messages "from Python" are sent to a real worker process as its port would
  # deliver them ({port, {:data, bytes}}), next to the real `python -m tether.worker` it runs.
  use ExUnit.Case, async: false
  import Bitwise
  # The worker logs every unexpected message from Python: here that is the point, not noise.
  @moduletag :capture_log
  alias Tether.TestPython

  @m "beam_handlers"

  defp compact(body), do: <<"TTMC", :erlang.crc32(body)::32-little, body::binary>>
  defp compact_term(term), do: IO.iodata_to_binary(:tether_protocol.compact(term))

  defp answered?({:ok, _}), do: true
  defp answered?({:error, _}), do: true
  defp answered?(_), do: false

  # An ETF atom whose text this node has never seen: decoding must not create it.
  defp fresh_atom do
    name = "hr_adv_#{System.unique_integer([:positive])}_#{:rand.uniform(1 <<< 30)}"
    {name, <<119, byte_size(name), name::binary>>}
  end

  defp exists?(name) do
    _ = String.to_existing_atom(name)
    true
  rescue
    ArgumentError -> false
  end

  describe "tether_protocol.decode/1" do
    test "malformed compact messages and frames are {:error, _}, with the reason" do
      frame = IO.iodata_to_binary(:tether.encode({:reply, 1, {:ok, [1, 2, 3]}}))
      cases = [
        {<<"TTMC">>, :not_a_tether_frame},
        {<<"TTMC", 1, 2, 3>>, :not_a_tether_frame},
        {compact(<<>>), :bad_etf},
        {compact(<<131>>), :bad_etf},
        {compact(<<131, 80, 255, 255, 255, 255>> <> :zlib.compress(<<97, 1>>)), :bad_etf},
        {compact(<<131, 80, 0, 0, 0, 2>> <> :zlib.compress(<<97, 1, 0::size(8 * 1_000_000)>>)), :bad_etf},
        {compact(<<131, 80, 0, 0, 0, 10, "garbagegarbage">>), :bad_etf},
        {compact(<<131, 108, 255, 255, 255, 255, 97, 1>>), :bad_etf},
        {compact(<<131, 109, 255, 255, 255, 240, 97>>), :bad_etf},
        {compact(<<131, 111, 255, 255, 255, 255, 0, 1>>), :bad_etf},
        {compact(<<131, 116, 255, 255, 255, 255, 97, 1>>), :bad_etf},
        {compact(<<131, 113, 119, 6, "erlang", 119, 4, "halt", 97, 0>>), :funs_refused},
        {compact(:erlang.term_to_binary([1, fn x -> x end])), :funs_refused},
        {compact(:erlang.term_to_binary({fn -> 1 end, Enum.to_list(1..100)}, [:compressed])), :funs_refused},
        {<<"TTMC", 0::32, 131, 97, 1>>, :checksum_mismatch},
        {binary_part(frame, 0, 70), :truncated},
        {binary_part(frame, 0, byte_size(frame) - 1) <> <<0>>, :checksum_mismatch},
        {IO.iodata_to_binary(:tether.encode([fn x -> x end])), :funs_refused},
        {"hello world", :not_a_tether_frame},
        {<<>>, :truncated}
      ]

      for {message, reason} <- cases do
        result = :tether_protocol.decode(message)
        assert {:error, found} = result, inspect({message, result}, limit: 8)
        assert found == reason or (is_tuple(found) and elem(found, 0) == reason), inspect({message, result})
      end
    end

    test "atoms named by Python are never created, wherever they sit in a message" do
      for wrap <- [
            fn a -> a end,
            fn a -> <<104, 3, 119, 5, "reply", 97, 1, 104, 2, 119, 2, "ok", a::binary>> end,
            fn a -> <<116, 0, 0, 0, 1, a::binary, 97, 1>> end,
            fn a -> <<88, a::binary, 0::32, 0::32, 0::32>> end,
            fn a -> <<113, a::binary, a::binary, 97, 1>> end
          ] do
        {name, atom} = fresh_atom()
        body = <<131>> <> wrap.(atom)
        # Named in the error (found by a walk that makes no atom either)
        assert {:error, {:bad_etf, why}} = :tether_protocol.decode(compact(body))
        assert why =~ "the atom '#{name}' at $"
        # The same term zlib-packed (tag 80): the atom hides from any scan of the bytes.
        packed = <<131, 80, byte_size(body) - 1::32>> <> :zlib.compress(binary_part(body, 1, byte_size(body) - 1))
        assert {:error, {:bad_etf, _}} = :tether_protocol.decode(compact(packed))
        refute exists?(name)
      end
    end

    test "naming the unknown atom takes one walk of the bytes: nested maps, EXPORT chains, odd keys" do
      {name, atom} = fresh_atom()
      ints = <<108, 200_000::32>> <> :binary.copy(<<97, 1>>, 200_000) <> <<106>>
      inner = <<116, 2::32, 119, 1, "a">> <> atom <> <<119, 1, "b">> <> ints
      nested = Enum.reduce(1..900, inner, fn _, acc -> <<116, 1::32, 119, 1, "k">> <> acc end)
      # Each enclosing map walked its value again: 31 s for 2 MB of this before.
      {us, {:error, {:bad_etf, why}}} = :timer.tc(fn -> :tether_protocol.decode(compact(<<131>> <> nested)) end)
      assert why =~ "the atom '#{name}' at $.k.k." and us < 2_000_000
      # EXPORT (tag 113) took the walk down once per byte: 879 MB for 10 MB of it.
      {:error, {:bad_etf, _}} = :tether_protocol.decode(compact(<<131>> <> :binary.copy(<<113>>, 2_000_000) <> atom))
      # A key that is not UTF-8 is shown as the binary it is; the path was a bare ArgumentError.
      key = <<116, 1::32, 109, 1::32, 255>> <> atom
      assert {:error, {:bad_etf, why}} = :tether_protocol.decode(compact(<<131>> <> key))
      assert why =~ "the atom '#{name}' at $[<<255>>] is not known"
      # A key too large to show is named by its size; an atom inside a map key says so; an atom that is not
      # UTF-8 is no name to show: the plain refusal.
      big = <<116, 1::32, 109, 300::32>> <> :binary.copy("k", 300) <> atom
      assert {:error, {:bad_etf, why}} = :tether_protocol.decode(compact(<<131>> <> big))
      assert why =~ "at $[<a key of 305 bytes>] is not known"
      in_key = <<116, 1::32, 108, 1::32>> <> atom <> <<106, 97, 1>>
      assert {:error, {:bad_etf, why}} = :tether_protocol.decode(compact(<<131>> <> in_key))
      assert why =~ "at $ (in a map key, at [0]) is not known"
      assert {:error, {:bad_etf, "not valid ETF" <> _}} = :tether_protocol.decode(compact(<<131, 119, 1, 255>>))
      refute exists?(name)
    end

    test "10,000 mutants of valid messages: always {:ok, _} or {:error, _}, the atom count unchanged" do
      {name, atom} = fresh_atom()
      value = %{"rows" => [1, 2.5, "x", [:ok, true]], "n" => -1 <<< 70}
      seeds = [
        compact_term({:reply, 1, {:ok, value}}),
        compact_term({:reply, 2, {:error, {:bad_request, "x"}}}),
        compact(<<131, 104, 2, 119, 2, "ok", atom::binary>>),
        IO.iodata_to_binary(:tether.encode({:reply, 3, {:ok, value}})),
        IO.iodata_to_binary(:tether.encode({:reply, 4, {:ok, value}}, %{compressed: true})),
        IO.iodata_to_binary(:tether.encode({:reply, 5, {:ok, value}}, %{compression: :gzip}))
      ]

      :rand.seed(:exsss, {7, 11, 13})
      # The first 1,000 warm up: modules loaded on a first error path bring their own atoms.
      created =
        for i <- 1..11_000, reduce: 0 do
          created ->
            mutant = mutate(Enum.random(seeds), :rand.uniform(4))
            # A compact mutant gets its CRC made right half the time, so that its term is what is tried.
            mutant =
              case mutant do
                <<"TTMC", _::32, body::binary>> when rem(byte_size(body), 2) == 0 -> compact(body)
                other -> other
              end

            before = :erlang.system_info(:atom_count)
            result = :tether_protocol.decode(mutant)
            added = :erlang.system_info(:atom_count) - before
            assert answered?(result), inspect({mutant, result}, limit: 20)
            if i > 1_000, do: created + added, else: created
        end

      assert created == 0
      refute exists?(name)
    end
  end

  defp mutate(bin, 0), do: bin

  defp mutate(bin, n) do
    size = byte_size(bin)
    at = :rand.uniform(max(size, 1)) - 1

    bin =
      case :rand.uniform(3) do
        1 when size > 0 ->
          <<pre::binary-size(at), _, post::binary>> = bin
          <<pre::binary, :rand.uniform(256) - 1, post::binary>>

        2 ->
          binary_part(bin, 0, at)

        _ ->
          <<pre::binary-size(at), post::binary>> = bin
          <<pre::binary, :crypto.strong_rand_bytes(:rand.uniform(6))::binary, post::binary>>
      end

    mutate(bin, n - 1)
  end

  describe "tether_embed.resolve/2" do
    test "embedded frames that are not frames, ranges that lie, paths that are not files: {:error, _}" do
      allow = fn _ -> true end
      arr = IO.iodata_to_binary(:tether.tensor(<<1, 2, 3, 4>>, {:u, 8}, {4}))
      dir = TestPython.tmp_dir!()
      short = Path.join(dir, "tether-short")
      File.write!(short, <<0, 1, 2>>)

      cases = [
        {{:"$tether", "garbage"}, :not_a_tether_frame},
        {%{a: {:"$tether", binary_part(arr, 0, byte_size(arr) - 1)}}, :truncated},
        {[{:"$tether", arr} | {:"$tether", "x"}], :truncated},
        {[{:"$tether_shm", short, -1, 5}], :embedded_shm},
        {[{:"$tether_shm", short, 0, 1 <<< 60}], :embedded_shm},
        {[{:"$tether_shm", short, 1 <<< 100, 1 <<< 100}], :embedded_shm},
        {[{:"$tether_shm", Path.join(dir, "tether-none"), 0, 5}], :embedded_shm},
        {[{:"$tether_shm", dir, 0, 64}], :embedded_shm},
        {[{:"$tether_shm", "/tmp/a\0b", 0, 64}], :embedded_shm},
        {[{:"$tether_shm", "/dev/zero", 0, 64}], :embedded_shm}
      ]

      for {term, reason} <- cases do
        assert {:error, found} = :tether_embed.resolve(term, allow), inspect(term, limit: 5)
        assert found == reason or (is_tuple(found) and elem(found, 0) == reason), inspect({term, found})
      end

      refused = :tether_embed.resolve({:"$tether_shm", short, 0, 3}, fn _ -> false end)
      assert {:error, {:refused_shm_path, ^short}} = refused
      # What is not a marker stays as it is: wrong arity, a non-binary frame.
      odd = [{:"$tether", 5}, {:"$tether_shm", short, 0}, {:"$tether_shm", 1, 0, 3}]
      assert {:ok, ^odd, _} = :tether_embed.resolve(odd, allow)
    end

    test "a frame that names itself by path, and chains of frames in frames, are refused, not read forever" do
      dir = TestPython.tmp_dir!()
      path = Path.join(dir, "tether-self")
      frame = fn n -> IO.iodata_to_binary(:tether.encode({:"$tether_shm", path, 0, n})) end
      # The frame's own length is a fixed point: its size no longer changes once Len is large enough.
      n = Enum.reduce(1..5, 0, fn _, n -> byte_size(frame.(n)) end)
      self_ref = frame.(n)
      assert byte_size(self_ref) == n
      File.write!(path, self_ref)
      only = fn p -> p == path end
      task = Task.async(fn -> :tether_embed.resolve({:"$tether_shm", path, 0, n}, only) end)
      # Reading the file a second time passes its size: refused there, before the depth bound would be.
      past = {:embedded_shm, path, {:reads_past_region, n, 0}}
      assert {:error, ^past} = Task.await(task, 10_000)
      assert {:error, ^past} = :tether_embed.resolve({:"$tether", self_ref}, only)

      leaf = IO.iodata_to_binary(:tether.encode("leaf", %{format: :raw}))
      chain = fn depth ->
        Enum.reduce(1..depth, leaf, fn _, f -> IO.iodata_to_binary(:tether.encode({:"$tether", f})) end)
      end
      # Eight frames inside the outer one still resolve (a real reply nests two); nine do not.
      assert {:ok, "leaf", _} = :tether_embed.resolve({:"$tether", chain.(8)}, only)
      assert {:error, {:embedded_too_deep, 8}} = :tether_embed.resolve({:"$tether", chain.(9)}, only)
      assert Exception.message(%Tether.Error{reason: {:embedded_too_deep, 8}}) =~ "more than 8 levels deep"
    end
  end

  describe "tether_protocol.form/1 and check_ready/1" do
    test "a ready whose fields have the wrong types is refused, not raised" do
      assert {:error, {:bad_handshake, [1]}} = :tether_protocol.check_ready([1])
      assert {:error, {:bad_handshake, %{tether: 5}}} = :tether_protocol.check_ready(%{tether: 5})
      assert {:error, {:incompatible, _}} = :tether_protocol.check_ready(%{tether: "x.y"})
      assert {:error, {:incompatible, _}} = :tether_protocol.check_ready(%{tether: <<255, 0, 1>>})
      assert :frame == :tether_protocol.form(%{messages: "compact"})
      assert :frame == :tether_protocol.form(%{messages: [1, 2]})
    end

    # lists:member/2 raised badarg on an improper list, so a ready whose `messages` was one
    # crashed the worker's start instead of giving a typed error.
    test "a ready whose messages is an improper list is read as frames, not raised" do
      assert :frame == :tether_protocol.form(%{messages: [<<"frame">> | :x]})
      assert :compact == :tether_protocol.form(%{messages: [<<"compact">> | :x]})
    end
  end

  # ------------------------------------------------------------------ a real worker, fed garbage

  defp start_worker do
    {:ok, w} = Tether.Worker.start_link(TestPython.opts())
    on_exit(fn -> TestPython.stop(w) end)
    w
  end

  defp port_of(w), do: Enum.find(Port.list(), fn p -> Port.info(p, :connected) == {:connected, w} end)

  # As the port delivers a message from Python.
  defp from_python(w, bytes), do: send(w, {port_of(w), {:data, bytes}})

  # The id of the call the worker is waiting on, once it waits.
  defp busy_id(w, tries \\ 200) do
    busy = :sys.get_state(w) |> Tuple.to_list() |> Enum.find(&(is_tuple(&1) and elem(&1, 0) == :busy))

    cond do
      busy != nil ->
        elem(busy, 2)

      tries > 0 ->
        Process.sleep(5)
        busy_id(w, tries - 1)

      true ->
        flunk("the worker never became busy")
    end
  end

  test "a worker fed malformed messages between calls keeps answering" do
    w = start_worker()
    {_, fresh} = fresh_atom()
    deep = Enum.reduce(1..100_000, :x, fn _, acc -> [acc] end)

    messages = [
      "garbage",
      <<>>,
      "PING",
      <<"TTMC", 0::32, 131, 97, 1>>,
      compact(<<131>> <> fresh),
      compact_term({:reply, 424_242, {:ok, 1}}),
      compact_term({:reply, -1, {:error, {:bad_request, "no request"}}}),
      compact_term({:ready, %{tether: "0.0.1", messages: [<<"frame">> | :x]}}),
      compact_term({:refused, :anything}),
      compact_term({:log, :no_level, 5, <<255, 254>>, [1]}),
      compact_term({:log, :warning, "x", deep, %{}}),
      compact_term({:log, :error}),
      compact_term({:alert, 1, 2, 3, 4, 5}),
      compact_term({:alert, "n", :firing, "m", :not_a_map, nil}),
      compact_term(deep),
      IO.iodata_to_binary(:tether.encode({:reply, 1, {:ok, {:"$tether", "garbage"}}}))
    ]

    for m <- messages, do: from_python(w, m)
    assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
    assert Process.alive?(w)
    assert %{phase: :ready} = Tether.Worker.info(w)
  end

  test "a call's reply that does not decode, or names bad frames, is that call's {:error, _}" do
    w = start_worker()

    for reply <- [
          fn _id -> compact(<<131, 1, 2, 3>>) end,
          fn id -> compact_term({:reply, id, :neither_ok_nor_error}) end,
          fn id -> compact_term({:reply, id, {:ok, [{:"$tether", "garbage"}]}}) end,
          fn id -> compact_term({:reply, id, {:ok, {:"$tether_shm", "/etc/hostname", 0, 8}}}) end,
          fn id -> compact_term({:reply, id, {:ok, {:"$tether_shm", "/nonexistent/tether-x", 0, 8}}}) end
        ] do
      task = Task.async(fn -> Tether.Worker.call(w, @m, "sleep", [0.3], 5_000) end)
      from_python(w, reply.(busy_id(w)))
      assert {:error, _} = Task.await(task)
      Process.sleep(350)  # Python's own answer to the sleep arrives, for no call: ignored
    end

    assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2])
  end

  # allow_shm/1 accepted any path that starts with /proc/<os_pid>/fd/, "/proc/<os_pid>/fd/../../../tmp/x"
  # included: the worker read whatever file Python named that way.
  test "a shared-memory path that climbs out of /proc/<pid>/fd/ is refused" do
    w = start_worker()
    dir = TestPython.tmp_dir!()
    target = Path.join(dir, "plain-file")
    File.write!(target, :tether.encode([:not, :a, :region]))
    os_pid = Tether.Worker.info(w).os_pid
    path = "/proc/#{os_pid}/fd/../../../.." <> target
    task = Task.async(fn -> Tether.Worker.call(w, @m, "sleep", [0.3], 5_000) end)
    from_python(w, compact_term({:reply, busy_id(w), {:ok, {:"$tether_shm", path, 0, File.stat!(target).size}}}))
    assert {:error, {:refused_shm_path, ^path}} = Task.await(task)
  end

  # A FIFO named tether-* blocked file:open/2 for ever: the worker process (and a dirty I/O
  # scheduler) waited for a writer that never comes. It is refused before any open now: only
  # regular files in the worker's own directory are read.
  test "a shared-memory path that is a FIFO is refused, not waited on" do
    w = start_worker()
    dir = TestPython.tmp_dir!()
    fifo = Path.join(dir, "tether-fifo")
    {_, 0} = System.cmd("mkfifo", [fifo])
    task = Task.async(fn -> Tether.Worker.call(w, @m, "sleep", [0.3], 2_000) end)
    from_python(w, compact_term({:reply, busy_id(w), {:ok, {:"$tether_shm", fifo, 0, 64}}}))

    try do
      assert {:error, {:refused_shm_path, ^fifo}} = Task.await(task, 3_000)
      assert {:ok, 3} = Tether.Worker.call(w, @m, "add", [1, 2], 2_000)
    after
      # Release a worker stuck in open(2): opening the FIFO read-write never blocks, and the
      # writer it adds lets the reader's open through.
      {_, 0} = System.cmd("sh", ["-c", "exec 3<>\"$0\"", fifo])
    end
  end
end
