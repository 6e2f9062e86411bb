defmodule TetherStreamEdgesTest do
  # Streams at their edges: io devices that are not files (StringIO, standard
  # input, an io server over a TCP socket, a process that is no io device at
  # all), a FIFO whose writer keeps it open, checkpoints altered where they
  # were kept, and handles that are not handles. Real files, pipes, sockets and
  # the venv's Python; every blocking call runs in a task with a deadline, so a
  # regression fails the test instead of hanging the suite.
  use ExUnit.Case, async: false
  import Bitwise

  alias Tether.TestPython

  # Writes a stream of `n` chunks with Python's StreamWriter and prints its
  # checkpoint (abort or close), or verifies one, as ETF on stdout.
  @script ~S"""
  import sys
  from tether import etf
  from tether.stream import StreamWriter, verify_stream

  action, path, compression, checksum, n = sys.argv[1:6]
  if action == "verify":
      with open(path, "rb") as f:
          out = verify_stream(f)
  else:
      with open(path, "wb") as f:
          w = StreamWriter(f, compression=compression, checksum=checksum)
          for i in range(int(n)):
              w.write({"i": i, "pad": "x" * 2000})
          cp = w.abort() if action == "abort" else w.close()
      out = cp.as_dict()
  sys.stdout.buffer.write(etf.encode(out))
  """

  defp py!(action, path, compression \\ "none", checksum \\ "crc32", n \\ 3) do
    {out, status} =
      System.cmd(TestPython.python(), ["-c", @script, action, path, compression, checksum, to_string(n)],
        env: [{"PYTHONPATH", TestPython.pythonpath()}])

    assert status == 0, out
    :erlang.binary_to_term(out)
  end

  # Python's checkpoints have string keys; resume: takes them as they are.
  defp atom_keys(cp), do: Map.new(cp, fn {k, v} -> {String.to_existing_atom(k), v} end)

  defp within(ms, fun) do
    task = Task.async(fun)
    Task.yield(task, ms) || Task.shutdown(task, :brutal_kill) || {:timed_out, ms}
  end

  @values [%{"n" => 1}, "raw bytes", [1, 2, 3], :binary.copy("z", 3000) <> <<0, 200, 255>>]

  setup do
    dir = TestPython.tmp_dir!()
    path = Path.join(dir, "s.tthr")
    {:ok, _} = Tether.Stream.write(@values, path)
    {:ok, dir: dir, path: path, bytes: File.read!(path)}
  end

  describe "io devices that are not file servers" do
    test "a StringIO: read, verify and open return, positions counted from 0", %{bytes: bytes} do
      for opts <- [[], [encoding: :latin1]] do
        {:ok, dev} = StringIO.open(bytes, opts)
        assert {:ok, @values} = within(5_000, fn -> Tether.Stream.read(dev) |> Enum.to_list() end)
        {:ok, dev} = StringIO.open(bytes, opts)
        assert {:ok, {:ok, %{count: 4}}} = within(5_000, fn -> Tether.Stream.verify(dev) end)
      end

      cut = binary_part(bytes, 0, byte_size(bytes) - 3)
      {:ok, dev} = StringIO.open(cut, encoding: :latin1)
      assert {:ok, {:ok, r}} = within(5_000, fn -> :tether_stream.open(dev, %{}) end)
      assert {:ok, {:error, {:stream, :truncated, %{position: at, chunk: 4}}}} =
               within(5_000, fn -> :tether_stream.verify(dev) end)

      # Counted from where reading began: here the device's first byte, as in a binary.
      assert {:error, {:stream, :truncated, %{position: ^at}}} = :tether_stream.verify(cut)
      assert :ok = :tether_stream.close(r)
    end

    test "an io server over a TCP socket, the bytes arriving in pieces and with a pause", %{bytes: bytes} do
      {:ok, listen} = :gen_tcp.listen(0, [:binary, active: false, ip: {127, 0, 0, 1}])
      {:ok, port} = :inet.port(listen)
      server = spawn_link(fn -> socket_io_server(listen) end)

      spawn_link(fn ->
        {:ok, sock} = :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false])
        {head, tail} = String.split_at(bytes, div(byte_size(bytes), 2))
        for <<piece::binary-size(97) <- head>>, do: :ok = :gen_tcp.send(sock, piece)
        :ok = :gen_tcp.send(sock, binary_part(head, byte_size(head) - rem(byte_size(head), 97), rem(byte_size(head), 97)))
        # A slow producer is waited on: only a device that never answers is refused.
        Process.sleep(300)
        :ok = :gen_tcp.send(sock, tail)
        :ok = :gen_tcp.close(sock)
      end)

      assert {:ok, @values} = within(10_000, fn -> Tether.Stream.read(server) |> Enum.to_list() end)
      :gen_tcp.close(listen)
    end

    test "standard input (the group leader) of a real VM, bytes piped in", %{path: path} do
      ebin = :code.lib_dir(:tether, :ebin)
      script = """
      :io.setopts(:standard_io, binary: true, encoding: :latin1)
      IO.puts(Tether.Stream.read(Process.group_leader()) |> Enum.count())
      """

      # timeout(1): on a regression the child hangs, and the test fails instead of waiting.
      cmd = "cat #{path} | timeout 60 elixir -pa #{ebin} -e \"$SCRIPT\""
      assert {"4\n", 0} = System.cmd("sh", ["-c", cmd], env: [{"SCRIPT", script}], stderr_to_stdout: true)
    end

    test "a process that is no io device, or a dead one, is refused within seconds" do
      mute = spawn(fn -> Process.sleep(:infinity) end)
      dead = spawn(fn -> :ok end)
      t0 = System.monotonic_time(:millisecond)
      assert {:ok, {:error, {:bad_argument, :source, msg}}} = within(15_000, fn -> Tether.Stream.verify(mute) end)
      assert msg =~ "did not answer an io request" and System.monotonic_time(:millisecond) - t0 < 10_000
      assert {:ok, {:error, {:bad_argument, :source, _}}} = within(15_000, fn -> :tether_stream.open(mute, %{}) end)
      assert {:ok, {:error, {:bad_argument, :sink, _}}} = within(15_000, fn -> :tether_stream.open_writer(mute, %{}) end)
      assert {:error, {:bad_argument, :source, dead_msg}} = Tether.Stream.verify(dead)
      assert dead_msg =~ "not alive"
      # The refused probe's late answer, if any, never lands in the caller's mailbox.
      refute_receive {:io_reply, _, _}, 100
      Process.exit(mute, :kill)
    end

    test "a file from File.open (an io server): positions still count from the file's start", %{dir: dir, bytes: bytes} do
      path = Path.join(dir, "prefixed.tthr")
      File.write!(path, ["HEADER--", binary_part(bytes, 0, byte_size(bytes) - 3)])
      {:ok, dev} = File.open(path, [:read, :binary])
      "HEADER--" = IO.binread(dev, 8)
      assert {:error, {:stream, :truncated, %{position: at}}} = Tether.Stream.verify(dev)
      File.close(dev)
      cut = {:binary, binary_part(bytes, 0, byte_size(bytes) - 3)}
      {:error, {:stream, :truncated, %{position: in_bytes}}} = Tether.Stream.verify(cut)
      assert at == in_bytes + 8
    end
  end

  # Serves get_chars from a socket (accepted here), whatever sizes the bytes come
  # in; any other request is {:error, :request}, as the io protocol says.
  defp socket_io_server(listen) do
    {:ok, sock} = :gen_tcp.accept(listen)
    serve(sock, "")
  end

  defp serve(sock, buf) do
    receive do
      {:io_request, from, ref, {:get_chars, :latin1, _prompt, n}} ->
        {reply, rest} = take(sock, buf, n)
        send(from, {:io_reply, ref, reply})
        serve(sock, rest)

      {:io_request, from, ref, _other} ->
        send(from, {:io_reply, ref, {:error, :request}})
        serve(sock, buf)
    end
  end

  defp take(_sock, buf, n) when byte_size(buf) >= n, do: {binary_part(buf, 0, n), binary_part(buf, n, byte_size(buf) - n)}

  defp take(sock, buf, n) do
    case :gen_tcp.recv(sock, 0) do
      {:ok, data} -> take(sock, buf <> data, n)
      {:error, _} when buf == "" -> {:eof, ""}
      {:error, _} -> {buf, ""}
    end
  end

  describe "a FIFO" do
    test "reading {file, fifo} ends at the end frame while the writer holds the pipe open", %{dir: dir, bytes: bytes} do
      fifo = Path.join(dir, "fifo")
      {_, 0} = System.cmd("mkfifo", [fifo])
      test = self()

      writer =
        spawn(fn ->
          {:ok, f} = :file.open(fifo, [:write, :raw, :binary])
          :ok = :file.write(f, bytes)
          send(test, :written)
          receive do: (:close -> :file.close(f))
        end)

      task = Task.async(fn -> Tether.Stream.read(fifo) |> Enum.to_list() end)
      assert_receive :written, 5_000
      result = Task.yield(task, 3_000)
      send(writer, :close)
      assert {:ok, @values} = result
    end
  end

  describe "appending checks the checkpoint against the file" do
    test "a digest rounded by a double-based store is refused, naming the field; the right one appends", %{dir: dir} do
      path = Path.join(dir, "a.tthr")
      {:ok, w} = :tether_stream.open_writer({:file, path}, %{})
      {:ok, w} = Enum.reduce(0..2, {:ok, w}, fn i, {:ok, w} -> :tether_stream.write(w, %{"i" => i}) end)
      {:ok, cp} = :tether_stream.abort(w)
      size = File.stat!(path).size
      rounded = trunc(cp.digest * 1.0)
      bads = if rounded != cp.digest, do: [rounded, bxor(cp.digest, 1)], else: [bxor(cp.digest, 1)]

      for bad <- bads do
        assert {:error, {:stream, :append_mismatch, info}} =
                 Tether.Stream.write([%{"i" => 3}], path, resume: %{cp | digest: bad}, append: true)

        assert %{field: :digest, declared: ^bad, computed: computed, hint: hint} = info
        assert computed == cp.digest and hint =~ "digest" and hint =~ "double"
        assert File.stat!(path).size == size
      end

      assert {:ok, %{seq: 4}} = Tether.Stream.write([%{"i" => 3}], path, resume: cp, append: true)
      assert {:ok, %{count: 4}} = Tether.Stream.verify(path)
    end

    test "seq, offset and stream_id mismatches name their field", %{dir: dir} do
      path = Path.join(dir, "b.tthr")
      {:ok, w} = :tether_stream.open_writer({:file, path}, %{})
      {:ok, w} = :tether_stream.write(w, "abcd")
      {:ok, cp} = :tether_stream.abort(w)

      for {key, value, field} <- [{:seq, 2, :seq}, {:offset, 9, :offset}, {:stream_id, String.duplicate("c", 32), :stream_id}] do
        assert {:error, {:stream, :append_mismatch, %{field: ^field, declared: ^value}}} =
                 Tether.Stream.write(["e"], path, resume: Map.put(cp, key, value), append: true)
      end
    end

    test "Python's xxh3 and crc32 streams: the chain is rebuilt as Python chains it", %{dir: dir} do
      for checksum <- ["xxh3-64", "crc32"] do
        path = Path.join(dir, "py-#{checksum}.tthr")
        cp = atom_keys(py!("abort", path, "none", checksum))

        assert {:error, {:stream, :append_mismatch, %{field: :digest}}} =
                 Tether.Stream.write([%{"i" => 3}], path, resume: %{cp | digest: bxor(cp.digest, 1 <<< 40)}, append: true)

        assert {:ok, %{seq: 4}} = Tether.Stream.write([%{"i" => 3}], path, resume: cp, append: true)
        assert %{"chunks" => 4} = py!("verify", path)
      end
    end

    test "a continuation file (from a later chunk) takes its own checkpoint; the digest is not knowable there", %{dir: dir} do
      a = Path.join(dir, "part-a.tthr")
      b = Path.join(dir, "part-b.tthr")
      {:ok, w} = :tether_stream.open_writer({:file, a}, %{})
      {:ok, w} = :tether_stream.write(w, "one")
      {:ok, cp} = :tether_stream.abort(w)
      {:ok, w} = :tether_stream.open_writer({:file, b}, %{resume: cp})
      {:ok, w} = :tether_stream.write(w, "two")
      {:ok, cp2} = :tether_stream.abort(w)
      assert {:ok, %{seq: 3}} = Tether.Stream.write(["three"], b, resume: cp2, append: true)
      assert {:ok, %{count: 3}} = Tether.Stream.verify({:binary, File.read!(a) <> File.read!(b)})
    end
  end

  describe "checkpoint fields, as Python's Checkpoint.from_dict" do
    @id String.duplicate("ab", 16)

    test "stream_id must be 32 lowercase hex digits", %{dir: dir} do
      for id <- ["6f1c2d3e-0000-4000-8000-123456789abc", "ABCDEF0123456789ABCDEF0123456789", "ab", 5] do
        path = Path.join(dir, "id.tthr")
        assert {:error, {:bad_option, :resume, msg}} =
                 Tether.Stream.write(["a"], path, resume: %{stream_id: id, seq: 0, offset: 0, digest: 0})

        assert msg =~ "stream_id must be 32 lowercase hex digits"
        refute File.exists?(path)
        assert {:error, {:bad_option, :resume, _}} =
                 :tether_stream.open("", %{resume: %{stream_id: id, seq: 0, offset: 0, digest: 0}})
      end
    end

    test "a chunk whose stream id is not 32 lowercase hex digits is refused by the reader, as Python's", %{dir: dir} do
      chunk = fn id, seq ->
        {fid, name, info, payload} = :tether_formats.raw("x")
        :tether_frame.build(fid, name, info, payload, %{checksum: :crc32, stream: %{"id" => id, "seq" => seq, "offset" => seq}})
        |> IO.iodata_to_binary()
      end

      bytes = chunk.("6f1c2d3e-0000-4000-8000-123456789abc", 0)
      assert {:error, {:stream, :not_a_chunk, %{field: :id, chunk: 0, hint: hint}}} = Tether.Stream.verify({:binary, bytes})
      assert hint =~ "32 lowercase hex"
      path = Path.join(dir, "uuid.tthr")
      File.write!(path, bytes)
      {out, status} =
        System.cmd(TestPython.python(), ["-m", "tether", "verify", path],
          env: [{"PYTHONPATH", TestPython.pythonpath()}], stderr_to_stdout: true)

      assert status != 0 and out =~ "32 lowercase hex"
    end

    test "ended: true/false, 1/0, nil or missing; a bad field is named with what it must be", %{dir: dir} do
      path = Path.join(dir, "e.tthr")
      base = %{stream_id: @id, seq: 0, offset: 0, digest: 0}

      for ended <- [false, 0, nil, :undefined] do
        File.rm(path)
        assert {:ok, %{seq: 1}} = Tether.Stream.write(["a"], path, resume: Map.put(base, :ended, ended))
      end

      File.rm(path)
      assert {:ok, _} = Tether.Stream.write(["a"], path, resume: Map.put(py_keys(base), "ended", 0))

      for ended <- [true, 1] do
        assert {:error, {:bad_option, :resume, msg}} = Tether.Stream.write(["a"], path, resume: Map.put(base, :ended, ended))
        assert msg =~ "complete stream"
      end

      for {key, value, words} <- [{:ended, 0.0, "ended must be true, false, 1, 0, nil"}, {:ended, "0", "ended must be"},
                                  {:seq, -1, "seq must be an integer in 0..2^64-1"}, {:offset, 1 <<< 64, "offset must be"},
                                  {:digest, 1.0e19, "digest must be an integer"}] do
        assert {:error, {:bad_option, :resume, msg}} = Tether.Stream.write(["a"], path, resume: Map.put(base, key, value))
        assert msg =~ words and msg =~ inspect(value)
        assert {:error, {:bad_option, :resume, erl}} = :tether_stream.open_writer({:file, path}, %{resume: Map.put(base, key, value)})
        assert erl =~ words
      end

      # A checkpoint with keys missing still says what a checkpoint is.
      assert {:error, {:bad_option, :resume, msg}} = Tether.Stream.write(["a"], path, resume: %{seq: 1})
      assert msg =~ "checkpoint/1" and msg =~ "got %{seq: 1}"
    end

    defp py_keys(cp), do: Map.new(cp, fn {k, v} -> {Atom.to_string(k), v} end)
  end

  describe "Elixir errors before the first chunk" do
    test "info.checkpoint and info.stream_id are nil, not :undefined", %{dir: dir, path: path} do
      assert {:error, {:stream, :empty, %{checkpoint: nil, stream_id: nil}}} = Tether.Stream.verify({:binary, ""})
      e = assert_raise Tether.Error, fn -> Tether.Stream.read({:binary, "junk"}) |> Enum.to_list() end
      assert {:stream, _, %{checkpoint: nil, stream_id: nil}} = e.reason
      e = assert_raise Tether.Error, fn -> Tether.Stream.read(Path.join(dir, "missing.tthr")) |> Enum.to_list() end
      assert {:stream, :io, %{stream_id: nil}} = e.reason
      {:ok, r} = :tether_stream.open("")
      assert {:error, {:stream, :no_chunk_read, %{checkpoint: nil, stream_id: nil}}} = Tether.Stream.checkpoint(r)
      # A new stream appended onto a file that holds one already: no stream id yet.
      assert {:error, {:stream, :append_mismatch, %{stream_id: nil}}} = Tether.Stream.write(["x"], path, append: true)
      e = assert_raise Tether.Error, fn -> Enum.into(["x"], Tether.Stream.into(path, append: true)) end
      assert {:stream, :append_mismatch, %{stream_id: nil}} = e.reason
    end
  end

  describe "bad handles and chunks the BEAM cannot decode" do
    test "a handle that is not one is {:error, {:bad_argument, _, _}}, not a FunctionClauseError" do
      assert {:error, {:bad_argument, :reader, _}} = :tether_stream.next(:garbage)
      assert {:error, {:bad_argument, :handle, _}} = :tether_stream.checkpoint(:garbage)
      assert {:error, {:bad_argument, :handle, _}} = :tether_stream.close(:garbage)
      assert {:error, {:bad_argument, :writer, _}} = :tether_stream.write(:garbage, 1)
      assert {:error, {:bad_argument, :writer, _}} = :tether_stream.write_tensor(:garbage, <<>>, {:f, 32}, {0})
      assert {:error, {:bad_argument, :writer, _}} = :tether_stream.abort(:garbage)
      {:ok, r} = :tether_stream.open("")
      assert {:error, {:bad_argument, :writer, _}} = :tether_stream.write(r, 1)
      assert {:error, {:bad_argument, :handle, msg}} = Tether.Stream.checkpoint(%{})
      assert msg =~ "expected a reader or writer"
    end

    test "verify says of lz4 and zstd chunks what read says", %{dir: dir} do
      for codec <- ["lz4", "zstd"] do
        path = Path.join(dir, "#{codec}.tthr")
        py!("close", path, codec)
        e = assert_raise Tether.Error, fn -> Tether.Stream.read(path) |> Enum.to_list() end
        assert {:stream, :decode, read_info} = e.reason
        assert {:unsupported_compression, atom, _} = read_info.reason
        assert Atom.to_string(atom) == codec
        assert {:error, {:stream, :decode, verify_info}} = Tether.Stream.verify(path)
        assert Map.take(verify_info, [:reason, :chunk, :checkpoint, :position]) ==
                 Map.take(read_info, [:reason, :chunk, :checkpoint, :position])
      end
    end
  end
end
