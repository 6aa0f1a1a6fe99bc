# Evaluates a Vagrantfile without Vagrant: a stand-in for Vagrant.configure
# records the machines it defines and prints them as JSON.
require "json"

MACHINES = {}

class StubProvider
  def method_missing(*) end

  def respond_to_missing?(*) = true
end

class StubVM
  attr_reader :data

  def initialize
    @data = { "private_networks" => [], "forwarded_ports" => [], "provisions" => [], "synced_folders" => [] }
  end

  def box=(value)
    @data["box"] = value
  end

  def hostname=(value)
    @data["hostname"] = value
  end

  def synced_folder(src, dst, **opts)
    @data["synced_folders"] << { "src" => src, "dst" => dst, "opts" => opts }
  end

  def provider(_name)
    yield StubProvider.new
  end

  def network(kind, **opts)
    case kind
    when "private_network" then @data["private_networks"] << opts
    when "forwarded_port" then @data["forwarded_ports"] << opts
    else raise "unexpected network #{kind}"
    end
  end

  def provision(kind, **opts)
    raise "unexpected provisioner #{kind}" unless kind == "shell"
    @data["provisions"] << opts
  end

  def define(name, **_opts)
    machine = StubMachine.new
    yield machine
    MACHINES[name] = machine.vm.data
  end
end

class StubMachine
  attr_reader :vm

  def initialize
    @vm = StubVM.new
  end
end

module Vagrant
  def self.configure(version)
    raise "Vagrant.configure(#{version})" unless version == "2"
    top = StubMachine.new
    yield top
    MACHINES["(all)"] = top.vm.data
  end
end

load ARGV.fetch(0)
puts JSON.generate(MACHINES)
