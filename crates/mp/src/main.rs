fn main() {
    multiprocess::init();
}
